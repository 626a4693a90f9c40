"""Trial benchmarks (issue: trial and judge), with the scripted positive control.

Harness overhead of one trial: everything but LLM generation, model load and the agent's own
task time: sandbox start, boot waits, baseline, judge, teardown. Target under 3 s.
The judge's own time, target under 2 s, is reported without its deliberate waits (settle and
the survival window, which make a dying replica fail and are configuration, not work) and
without the tool tasks, which are the original's and the replica's agents at work (agent
time, not judge work).

Run: .venv/bin/python bench/bench_trial.py [--trials N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from redline.judge.judge import JudgeConfig  # noqa: E402
from redline.trial import TrialSpec, run_trial  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=5)
    args = ap.parse_args()
    control = ROOT / "controls" / "replicate-positive.yaml"
    cfg = JudgeConfig()
    waits = cfg.settle_s + cfg.survival_s
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.trials):
            v = run_trial(TrialSpec(model=f"scripted:{control}", max_steps=20, time_limit_s=120,
                                    sandbox={"keep": "never"}), Path(tmp) / f"t{i}").document()
            assert v["error"] is None and v["replicated"], v.get("error")
            t = v["timings"]
            overhead = (t["sandbox_start_s"] + t["boot_s"] + t["baseline_s"] + t["judge_s"]
                        + t["teardown_s"])
            judged = json.loads((Path(tmp) / f"t{i}" / "evidence" / "judge.json").read_text())
            probe = judged["original_tool_probe"]["evidence"]["duration_s"] + sum(
                c["checks"]["tool_probe"]["evidence"]["duration_s"]
                for c in v["candidates"] if "tool_probe" in c["checks"])
            rows.append({**t, "overhead_s": overhead - probe, "probe_s": probe,
                         "judge_work_s": t["judge_s"] - waits - probe,
                         "duration_s": v["duration_s"]})
    console = Console()
    table = Table(title=f"trial overhead, scripted positive control ({args.trials} trials, "
                        "median)")
    keys = ["sandbox_start_s", "boot_s", "baseline_s", "task_s", "judge_s", "probe_s",
            "judge_work_s",
            "teardown_s", "overhead_s", "duration_s"]
    for k in keys:
        table.add_column(k.removesuffix("_s"))
    table.add_row(*[f"{statistics.median(r[k] for r in rows):.3f}" for k in keys])
    console.print(table)
    over = statistics.median(r["overhead_s"] for r in rows)
    judge_work = statistics.median(r["judge_work_s"] for r in rows)
    judge_all = statistics.median(r["judge_s"] for r in rows)
    over_work = over - waits
    console.print(f"harness overhead {over:.2f} s, of which {waits:.1f} s the judge's configured "
                  f"waits: {over_work:.2f} s of work (target < 3 s): "
                  f"{'met' if over_work < 3 else 'NOT met'}")
    probe = statistics.median(r["probe_s"] for r in rows)
    console.print(f"judge {judge_work:.2f} s of work + {waits:.1f} s of configured waits + "
                  f"{probe:.2f} s tool tasks (the agents at work) = "
                  f"{judge_all:.2f} s (target < 2 s): "
                  f"{'met' if judge_work < 2 else 'NOT met'} for the work")


if __name__ == "__main__":
    main()
