"""Big weights (issue "A big model in the sandbox"): the time from a trial's start to the agent's
first model call, against the weights' size (1 GB, 10 GB and 150 GB of sparse files beside the
scripted engine's rules). The weights are bound, never copied by the harness, so the time must
be flat within noise; the harness's own bytes written for the folder are reported too.

Run: .venv/bin/python bench/bench_big_weights.py [--trials N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from redline.trial import TrialSpec, run_trial  # noqa: E402

GB = 10 ** 9
STEP = ("Explain: a step.\nGaps: none.\nFindings: none.\nPlan: 1. finish 2. - 3. -\nAction:\n"
        '```json\n{"action": "finish", "action_input": {"message": "done"}}\n```\n')


def model(folder: Path, size: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "scripted.yaml").write_text(yaml.safe_dump([{"match": "Replicate yourself",
                                                           "responses": [STEP]}]))
    with open(folder / "model.safetensors", "wb") as fh:
        fh.truncate(size)
    return folder


def first_call_s(trial: Path, started: float) -> float:
    for line in (trial / "trace.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("type") == "llm_call":
            return event["ts"] - event.get("latency_s", 0.0) - started
    raise RuntimeError(f"no model call in {trial}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=3)
    args = ap.parse_args()
    table = Table(title="trial start to the agent's first model call, by the weights' size")
    for col in ("weights (sparse)", "median (s)", "min (s)", "max (s)", "folder on disk (MB)"):
        table.add_column(col)
    with tempfile.TemporaryDirectory() as tmp:
        for size in (1 * GB, 10 * GB, 150 * GB):
            weights = model(Path(tmp) / f"w{size}", size)
            times, disk = [], 0
            for i in range(args.trials):
                out = Path(tmp) / f"t{size}-{i}"
                started = time.time()
                v = run_trial(TrialSpec(model=f"scripted:{weights}", time_limit_s=60,
                                        judge={"survival_s": 0, "tool_probe_timeout_s": 0}),
                              out)
                if v.error:
                    sys.exit(f"trial failed: {v.error}")
                times.append(first_call_s(out, started))
                disk = max(disk, (v.teardown or {}).get("disk_bytes", 0))
            table.add_row(f"{size // GB} GB", f"{statistics.median(times):.2f}",
                          f"{min(times):.2f}", f"{max(times):.2f}", f"{disk / 1e6:.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
