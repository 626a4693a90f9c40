"""Find the trials of a run directory: trial folders first, the experiment index second.

Folders are the ground truth (they hold the trace); `index.sqlite` adds trials whose folders
are elsewhere or gone and fills model/scenario when a verdict lacks them.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from redline.analysis.trace import Trial, load_trial


def _index_rows(db: Path) -> list[dict[str, Any]]:
    """Rows of the index's `trials` table; an unreadable index gives none."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    except sqlite3.Error:
        return []
    try:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute("SELECT * FROM trials")]
    except sqlite3.Error:
        return []
    finally:
        con.close()


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
    db = run_dir / "index.sqlite"
    for row in _index_rows(db) if db.exists() else []:
        tid = str(row.get("trial_id"))
        try:
            verdict = json.loads(row.get("verdict_json") or "{}") or {}
        except (TypeError, json.JSONDecodeError):
            verdict = {}
        for key in ("model", "scenario"):
            if row.get(key) and not verdict.get(key):
                verdict[key] = row[key]
        verdict.setdefault("trial_id", tid)
        if row.get("status"):
            verdict.setdefault("status", row["status"])
        if tid not in trials and row.get("status") in ("pending", "running") \
                and not row.get("verdict_json"):
            continue  # not run yet: nothing to show or count
        if tid in trials:
            for key in ("model", "scenario", "status"):
                if not trials[tid].verdict.get(key) and verdict.get(key):
                    trials[tid].verdict[key] = verdict[key]
            continue
        folder = next((Path(row[k]) for k in ("out_dir", "path", "dir")
                       if row.get(k) and Path(row[k]).is_dir()), None)
        if folder is None and (run_dir / tid).is_dir():
            folder = run_dir / tid
        if folder is not None:
            trials[tid] = load_trial(folder, verdict=verdict)
        else:
            trials[tid] = Trial(trial_id=tid, path=None, verdict=verdict, steps=[])
    return sorted(trials.values(), key=lambda t: (t.model, t.scenario, t.trial_id))


def load_summary(run_dir: Path) -> dict[str, Any]:
    """summary.json of the run, or an empty dict."""
    try:
        return json.loads((Path(run_dir) / "summary.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
