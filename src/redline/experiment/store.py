"""Results store: one folder per trial, each verdict.json written atomically, and an SQLite index.

Crash safety comes from the order of writes: a trial's verdict.json lands (tmp + os.replace)
before the index says `done`, so a runner killed at any instant leaves each trial either
finished on disk (adopted on resume, never re-run) or without a verdict (its partial folder is
cleaned and it runs again). Only the runner process writes the index, inside transactions, and
a lock file keeps two runners off one results folder.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redline.experiment.config import Job
from redline.results import atomic_write_json

INDEX = "index.sqlite"
VERDICT = "verdict.json"

SCHEMA = """
CREATE TABLE IF NOT EXISTS trials (
    trial_id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    scenario TEXT NOT NULL,
    "index" INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'error')),
    verdict_json TEXT,
    started_at TEXT,
    finished_at TEXT,
    attempt INTEGER NOT NULL DEFAULT 0,
    spec_json TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


class StoreBusy(RuntimeError):
    """Another runner holds this results folder."""


def now() -> str:
    return datetime.now(UTC).isoformat()


def read_verdict(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / VERDICT).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def status_of(verdict: dict[str, Any]) -> str:
    return "error" if verdict.get("error") else "done"


@dataclass
class SyncReport:
    """What a (re)start found: finished trials kept, interrupted ones queued again."""

    total: int = 0
    done: int = 0
    errors: int = 0
    adopted: list[str] = field(default_factory=list)  # verdict on disk, index not yet updated
    interrupted: list[str] = field(default_factory=list)  # running without verdict: re-run
    changed: list[str] = field(default_factory=list)  # finished with different settings


class Store:
    def __init__(self, out_dir: Path) -> None:
        # absolute: Ray tasks (and workers elsewhere) do not share the runner's cwd
        self.out_dir = Path(out_dir).resolve()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.out_dir / ".runner.lock", "w")  # noqa: SIM115 - held until close
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise StoreBusy(f"another runner is using {self.out_dir}") from None
        self.db = sqlite3.connect(self.out_dir / INDEX, isolation_level=None)
        # a rollback journal, not WAL: results folders often live on NFS for a cluster
        self.db.execute("PRAGMA journal_mode=DELETE")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()
        self._lock.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def folder(self, trial_id: str) -> Path:
        return self.out_dir / trial_id

    def _tx(self, sql: str, params: Iterable[Any] = ()) -> None:
        with self.db:  # BEGIN ... COMMIT, or ROLLBACK on error
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(sql, tuple(params))

    def set_meta(self, key: str, value: Any) -> None:
        self._tx("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def sync(self, jobs: list[Job], retry_errors: bool = False) -> SyncReport:
        """Add new trials, adopt verdicts the index missed, queue interrupted trials again."""
        report = SyncReport(total=len(jobs))
        rows = {r[0]: r for r in self.db.execute(
            "SELECT trial_id, status, spec_json FROM trials")}
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for job in jobs:
                spec_json = job.spec.model_dump_json()
                row = rows.get(job.trial_id)
                if row is None:
                    self.db.execute(
                        'INSERT INTO trials (trial_id, model, scenario, "index", status, '
                        "spec_json) VALUES (?, ?, ?, ?, 'pending', ?)",
                        (job.trial_id, job.model, job.scenario, job.index, spec_json))
                    status = "pending"
                else:
                    status = row[1]
                    if status in ("done", "error") and row[2] != spec_json:
                        report.changed.append(job.trial_id)
                folder = self.folder(job.trial_id)
                if status in ("pending", "running"):
                    verdict = read_verdict(folder)
                    if verdict is not None:
                        status = status_of(verdict)
                        self._finish(job.trial_id, verdict, status)
                        report.adopted.append(job.trial_id)
                    elif status == "running":
                        report.interrupted.append(job.trial_id)
                        self.db.execute("UPDATE trials SET status='pending' WHERE trial_id=?",
                                        (job.trial_id,))
                        status = "pending"
                if status == "error" and retry_errors:
                    self.db.execute("UPDATE trials SET status='pending' WHERE trial_id=?",
                                    (job.trial_id,))
                    status = "pending"
                report.done += status == "done"
                report.errors += status == "error"
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return report

    def statuses(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT trial_id, status FROM trials"))

    def verdicts(self) -> dict[str, dict[str, Any]]:
        return {tid: json.loads(v) for tid, v in self.db.execute(
            "SELECT trial_id, verdict_json FROM trials WHERE verdict_json IS NOT NULL")}

    def mark_running(self, trial_id: str) -> None:
        """Clean what an interrupted attempt left, then record the new attempt."""
        folder = self.folder(trial_id)
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        self._tx("UPDATE trials SET status='running', attempt=attempt+1, started_at=?, "
                 "finished_at=NULL, verdict_json=NULL WHERE trial_id=?", (now(), trial_id))

    def mark_pending(self, trial_id: str) -> None:
        """The worker under this trial died (not the trial's fault): it will run again."""
        self._tx("UPDATE trials SET status='pending' WHERE trial_id=?", (trial_id,))

    def attempts(self, trial_id: str) -> int:
        row = self.db.execute("SELECT attempt FROM trials WHERE trial_id=?", (trial_id,)).fetchone()
        return int(row[0]) if row else 0

    def record(self, trial_id: str, verdict: dict[str, Any]) -> str:
        """Finish a trial: verdict file first (if the trial did not write it), then the index."""
        folder = self.folder(trial_id)
        if read_verdict(folder) is None:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_json(folder / VERDICT, verdict)
        status = status_of(verdict)
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self._finish(trial_id, verdict, status)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return status

    def _finish(self, trial_id: str, verdict: dict[str, Any], status: str) -> None:
        self.db.execute(
            "UPDATE trials SET status=?, verdict_json=?, finished_at=? WHERE trial_id=?",
            (status, json.dumps(verdict, default=str), verdict.get("finished_at") or now(),
             trial_id))


def load_rows(out_dir: Path) -> list[dict[str, Any]]:
    """Every trial of a results folder, read-only: from the index, else from verdict files."""
    out_dir = Path(out_dir)
    if (out_dir / INDEX).exists():
        db = sqlite3.connect(f"file:{out_dir / INDEX}?mode=ro", uri=True)
        try:
            cur = db.execute('SELECT trial_id, model, scenario, "index", status, verdict_json, '
                             "started_at, finished_at, attempt FROM trials ORDER BY trial_id")
            cols = [c[0] for c in cur.description]
            rows = [dict(zip(cols, r, strict=True)) for r in cur]
        finally:
            db.close()
        for row in rows:
            row["verdict"] = json.loads(row.pop("verdict_json") or "null")
        return rows
    rows = []
    for path in sorted(out_dir.glob(f"*/{VERDICT}")):
        verdict = read_verdict(path.parent)
        if verdict is None:
            continue
        rows.append({"trial_id": path.parent.name, "model": verdict.get("model"),
                     "scenario": verdict.get("scenario"), "index": None,
                     "status": status_of(verdict), "verdict": verdict,
                     "started_at": verdict.get("started_at"),
                     "finished_at": verdict.get("finished_at"), "attempt": 1})
    return rows
