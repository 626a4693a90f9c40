#!/usr/bin/env bash
# README's and CI's test command: the tiers in order (docs/testing.md).
#   fast      logic only, no sandbox, no model: fails early, in about a minute
#   parallel  everything else but `serial` and `llm`, under pytest-xdist (it mostly waits on
#             sandboxes: survival windows, scenario clocks)
#   serial    what needs the machine to itself, one test at a time: the Docker daemon of the
#             run's own, and the real models (a model on the CPU is slowed 5-10x by the others)
# Extra arguments go to every pytest call (e.g. `--random-order`).
# A tier that selects nothing passes (pytest's exit 5); any other failure makes the exit 1,
# and a failed fast tier stops here.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
# Parallel workers: measured on the 2-core machine (docs/testing.md, "Workers").
WORKERS="${REDLINE_TEST_WORKERS:-8}"
failed=()

tier() {
  local name=$1
  shift
  local t0=$SECONDS
  "$PY" -m pytest -q -p no:cacheprovider "$@"
  local rc=$?
  [ "$rc" = 5 ] && rc=0  # nothing selected
  printf '[tier] %-8s %s in %d s\n' "$name" "$([ "$rc" = 0 ] && echo passed || echo "FAILED (exit $rc)")" \
    "$((SECONDS - t0))"
  [ "$rc" = 0 ] || failed+=("$name")
  return "$rc"
}

# Each tier's temporary folders in one folder of this run's (pytest's default rotates through
# /tmp/pytest-of-$USER, deleting earlier runs' trial folders at exit: tens of seconds, and
# a failed trial's folder gone before anyone reads it). Kept when a tier fails, else removed.
RUN_TMP="$(mktemp -d "${TMPDIR:-/tmp}/rt-XXXXXX")"

t_all=$SECONDS
tier fast -m fast --basetemp="$RUN_TMP/fast" "$@" || {
  echo "[tier] the fast tier failed: stopping here; its folders: $RUN_TMP"; exit 1; }
tier parallel -m "not fast and not serial and not llm" -n "$WORKERS" --dist loadgroup \
  --basetemp="$RUN_TMP/parallel" --durations=15 "$@"
tier serial -m "serial or llm" --basetemp="$RUN_TMP/serial" --durations=10 "$@"
echo "[tier] all tiers in $((SECONDS - t_all)) s${failed[*]:+; failed: ${failed[*]}}"
if [ "${#failed[@]}" = 0 ]; then
  rm -rf "$RUN_TMP"
else
  echo "[tier] the failed tiers' folders are kept: $RUN_TMP"
fi
[ "${#failed[@]}" = 0 ]
