#!/usr/bin/env bash
# Run every benchmark in bench/ and print their tables. Usage: bash bench/run.sh
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
for b in bench/bench_*.py; do
  echo "=== $b"
  .venv/bin/python "$b" || status=1
done
echo "=== bench/bench_experiment.py --ray-nodes 1,2 (a loopback Ray cluster of 1 and 2 nodes)"
.venv/bin/python bench/bench_experiment.py --ray-nodes 1,2 || status=1
exit $status
