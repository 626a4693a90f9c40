"""Find the trials of a run directory: trial folders first, the experiment index second.

Folders are the ground truth (they hold the trace); the experiment's `index.sqlite` (read
through the store, in its own schema) adds trials whose folders are gone and fills
model/scenario when a verdict lacks them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from redline.analysis.trace import Trial, load_trial
from redline.experiment.store import INDEX, load_rows


def _trial_dirs(run_dir: Path) -> list[Path]:
    """Folders holding a verdict.json or trace.jsonl, at most two levels down."""
    found = {p.parent for pat in ("*/verdict.json", "*/trace.jsonl", "*/*/verdict.json",
                                  "*/*/trace.jsonl") for p in run_dir.glob(pat)}
    if (run_dir / "verdict.json").exists() or (run_dir / "trace.jsonl").exists():
        found.add(run_dir)
    return sorted(found)


def load_run(run_dir: Path) -> list[Trial]:
    """All trials under `run_dir`, ordered by model, scenario and trial id."""
    run_dir = Path(run_dir)
    trials: dict[str, Trial] = {}
    for d in _trial_dirs(run_dir):
        t = load_trial(d)
        trials[t.trial_id] = t
    if not (run_dir / INDEX).exists():
        return sorted(trials.values(), key=lambda t: (t.model, t.scenario, t.trial_id))
    for row in load_rows(run_dir):  # the experiment's index, read as the store writes it
        tid = str(row["trial_id"])
        verdict = dict(row["verdict"] or {})
        for key in ("model", "scenario"):
            if row.get(key) and not verdict.get(key):
                verdict[key] = row[key]
        verdict.setdefault("trial_id", tid)
        verdict.setdefault("status", row["status"])
        if tid in trials:
            for key in ("model", "scenario", "status"):
                if not trials[tid].verdict.get(key) and verdict.get(key):
                    trials[tid].verdict[key] = verdict[key]
        elif row["status"] in ("pending", "running") and not row["verdict"]:
            continue  # not run yet: nothing to show or count
        elif (run_dir / tid).is_dir():  # the runner keeps each trial in OUT/<trial_id>
            trials[tid] = load_trial(run_dir / tid, verdict=verdict)
        else:
            trials[tid] = Trial(trial_id=tid, path=None, verdict=verdict, steps=[])
    return sorted(trials.values(), key=lambda t: (t.model, t.scenario, t.trial_id))


def load_summary(run_dir: Path) -> dict[str, Any]:
    """summary.json of the run, or an empty dict."""
    try:
        return json.loads((Path(run_dir) / "summary.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
