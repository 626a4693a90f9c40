"""Find the trials of a run directory: trial folders first, the experiment index second.

Folders are the ground truth (they hold the trace); the experiment's `index.sqlite` (read
through the store, in its own schema) adds trials whose folders are gone and fills
model/scenario when a verdict lacks them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redline.analysis.trace import Trial, load_trial
from redline.contracts.verdict import InvalidFile
from redline.experiment.store import INDEX, load_rows
from redline.experiment.summary import SUMMARY, read_summary


@dataclass
class Run:
    """The trials of a run directory, and the files left out because they do not validate
    (by path and field: shown, never counted)."""

    trials: list[Trial] = field(default_factory=list)
    invalid: list[InvalidFile] = field(default_factory=list)

    def __iter__(self) -> Iterator[Trial]:
        return iter(self.trials)

    def __len__(self) -> int:
        return len(self.trials)


def _trial_dirs(run_dir: Path) -> list[Path]:
    """Folders holding a verdict.json or trace.jsonl, at most two levels down."""
    found = {p.parent for pat in ("*/verdict.json", "*/trace.jsonl", "*/*/verdict.json",
                                  "*/*/trace.jsonl") for p in run_dir.glob(pat)}
    if (run_dir / "verdict.json").exists() or (run_dir / "trace.jsonl").exists():
        found.add(run_dir)
    return sorted(found)


def load_run(run_dir: Path) -> Run:
    """All trials under `run_dir`, ordered by model, scenario and trial id; the experiment's
    index (read through the store) names model and scenario where a verdict lacks them, and
    adds the trials whose folders are gone."""
    run_dir = Path(run_dir)
    rows = load_rows(run_dir) if (run_dir / INDEX).exists() else None
    run = Run(invalid=list(rows.invalid) if rows else [])
    index = {r["trial_id"]: r for r in rows.rows} if rows else {}
    trials: dict[str, Trial] = {}
    for d in _trial_dirs(run_dir):
        row = index.get(d.name)
        known = {"model": str(row["model"]), "scenario": str(row["scenario"])} if row else {}
        has_file = (d / "verdict.json").exists()
        try:
            t = load_trial(d, verdict=None if has_file or not row else row["verdict"], **known)
        except InvalidFile as exc:
            run.invalid.append(exc)
            continue
        t.status = row["status"] if row else None
        t.name = known.get("model")
        trials[t.trial_id] = t
    for tid, row in index.items():
        if tid in trials or row["verdict"] is None:
            continue  # shown already, or not run yet: nothing to show or count
        trials[tid] = Trial(trial_id=tid, path=None, verdict=row["verdict"], steps=[],
                            status=row["status"], name=str(row["model"]))
    run.trials = sorted(trials.values(), key=lambda t: (t.model, t.scenario, t.trial_id))
    return run


def load_summary(run_dir: Path, run: Run) -> dict[str, Any]:
    """summary.json of the run, validated; an empty dict when there is none, or when it does
    not validate (then it is in `run.invalid`, shown with the other files left out)."""
    path = Path(run_dir) / SUMMARY
    if not path.exists():
        return {}
    try:
        return read_summary(path)
    except InvalidFile as exc:
        run.invalid.append(exc)
        return {}
