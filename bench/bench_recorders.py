"""What the kernel recorders cost (issue: judge v3), with the scripted positive control.

The same trial with the kernel record on and off, alternately: the harness process's own CPU
time (every thread of it: the recorders' readers, the judge, the pumps), the recorders'
reader threads on their own, the judge's work without its configured waits and tool tasks,
and the events each recorder lost. Target: the recorders add under 10 % to the harness's own
work per trial (about 1.1 s), and the judge's work stays under 2 s. The survival window is
shortened to 1 s: a wait, not work.

Run: .venv/bin/python bench/bench_recorders.py [--trials N]
"""

from __future__ import annotations

import argparse
import json
import resource
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

HARNESS_WORK_S = 1.1  # the harness's own work per trial (bench_trial.py, README)


def _cpu(who: int = resource.RUSAGE_SELF) -> float:
    ru = resource.getrusage(who)
    return ru.ru_utime + ru.ru_stime


def one(tmp: Path, name: str, on: bool) -> dict[str, float]:
    control = ROOT / "controls" / "replicate-positive.yaml"
    cfg = JudgeConfig(survival_s=1, kernel_record=on)
    c0, k0 = _cpu(), _cpu(resource.RUSAGE_CHILDREN)
    v = run_trial(TrialSpec(model=f"scripted:{control}", max_steps=20, time_limit_s=120,
                            judge=cfg, sandbox={"keep": "never"}), tmp / name).document()
    cpu, kids = _cpu() - c0, _cpu(resource.RUSAGE_CHILDREN) - k0
    assert v["error"] is None and v["replicated"], v.get("error")
    evidence = tmp / name / "evidence"
    judged = json.loads((evidence / "judge.json").read_text())
    probe = judged["original_tool_probe"]["evidence"]["duration_s"] + sum(
        c["checks"]["tool_probe"]["evidence"]["duration_s"]
        for c in v["candidates"] if "tool_probe" in c["checks"])
    record = json.loads((evidence / "kernel_record.json").read_text())
    rec = [record["lineage"], record["files"]]
    return {"harness_cpu_s": cpu, "children_cpu_s": kids,
            "readers_cpu_s": sum(r.get("reader_cpu_s") or 0 for r in rec),
            "judge_work_s": v["timings"]["judge_s"] - cfg.settle_s - cfg.survival_s - probe,
            "events": float(sum(r.get("events") or 0 for r in rec)),
            "dropped": float(sum(r.get("dropped") or 0 for r in rec))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=3)
    args = ap.parse_args()
    rows: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        one(Path(tmp), "warm", True)  # the environment and caches, once
        for i in range(args.trials):
            for on in (True, False):
                rows[on].append(one(Path(tmp), f"t{i}-{on}", on))
    keys = ["harness_cpu_s", "children_cpu_s", "readers_cpu_s", "judge_work_s", "events", "dropped"]
    table = Table(title=f"kernel recorders, scripted positive control ({args.trials} trials "
                        "each, median)")
    table.add_column("kernel record")
    for k in keys:
        table.add_column(k.removesuffix("_s"))
    for on in (True, False):
        table.add_row("on" if on else "off",
                      *[f"{statistics.median(r[k] for r in rows[on]):.3f}" for k in keys])
    console = Console()
    console.print(table)
    med = {on: {k: statistics.median(r[k] for r in rows[on]) for k in keys} for on in rows}
    added = med[True]["harness_cpu_s"] - med[False]["harness_cpu_s"]
    kids = med[True]["children_cpu_s"] - med[False]["children_cpu_s"]
    share = added / HARNESS_WORK_S
    console.print(f"the recorders add {added:.3f} s of harness CPU per trial "
                  f"({share:.0%} of its ~{HARNESS_WORK_S} s of work; readers alone "
                  f"{med[True]['readers_cpu_s']:.3f} s): target < 10 %: "
                  f"{'met' if share < 0.10 else 'NOT met'}; children (the bytecode check, "
                  f"the brain sampler, and the sandbox's own processes) {kids:+.3f} s")
    console.print(f"judge work with the record {med[True]['judge_work_s']:.2f} s "
                  f"(target < 2 s): {'met' if med[True]['judge_work_s'] < 2 else 'NOT met'}; "
                  f"events lost: {int(max(r['dropped'] for r in rows[True]))}")


if __name__ == "__main__":
    main()
