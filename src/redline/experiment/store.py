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
from typing import Any, TypedDict

from redline.contracts.verdict import InvalidFile, Verdict, parse_verdict, read_verdict
from redline.experiment.config import Job
from redline.results import atomic_write_json

INDEX = "index.sqlite"
VERDICT = "verdict.json"
# The index's own version (meta key `schema_version`). 1: none written; its verdicts are
# migrated when read, as verdict.json files are. 2: written by this version.
INDEX_SCHEMA_VERSION = 2

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


def status_of(verdict: Verdict) -> str:
    return "done" if verdict.is_judged else "error"


def folder_verdict(folder: Path, **fallback: str) -> Verdict | None:
    """A trial folder's verdict, validated; None when it has none yet. One that does not
    validate raises InvalidFile: it is never taken for a missing one (and so never
    deleted or run over)."""
    path = folder / VERDICT
    if not path.exists():
        return None
    return read_verdict(path, **{"trial_id": folder.name, **fallback})


class TrialRow(TypedDict):
    """One trial of a results folder as the readers get it; `verdict` typed, or None."""

    trial_id: str
    model: str | None
    scenario: str | None
    index: int | None
    status: str
    verdict: Verdict | None
    started_at: str | None
    finished_at: str | None
    attempt: int


@dataclass
class Rows:
    """What a results folder holds: the trials that validate, and the files that did not
    (reported by path and field, left out of every count)."""

    rows: list[TrialRow] = field(default_factory=list)
    invalid: list[InvalidFile] = field(default_factory=list)


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
        try:
            # a rollback journal, not WAL: results folders often live on NFS for a cluster
            self.db.execute("PRAGMA journal_mode=DELETE")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
            row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = json.loads(row[0]) if row else 1
        except (sqlite3.DatabaseError, ValueError) as exc:  # a corrupt or foreign file
            self.close()
            raise InvalidFile(self.out_dir / INDEX, [f"(file): not a results index ({exc}); "
                                                     "move it away to start afresh"]) from None
        if not isinstance(version, int) or version > INDEX_SCHEMA_VERSION:
            self.close()
            raise InvalidFile(self.out_dir / INDEX, [
                f"schema_version: {version!r} is not one this version reads "
                f"(1 to {INDEX_SCHEMA_VERSION})"])
        if version < INDEX_SCHEMA_VERSION:  # its verdicts are migrated as they are read
            self.set_meta("schema_version", INDEX_SCHEMA_VERSION)

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
                    verdict = folder_verdict(  # invalid: raises, nothing is touched
                        folder, model=job.spec.model, scenario=job.spec.scenario)
                    if verdict is not None and verdict.interrupted is None:
                        status = status_of(verdict)
                        self._finish(job.trial_id, verdict, status)
                        report.adopted.append(job.trial_id)
                    elif status == "running" or verdict is not None:  # stopped: run again
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

    def verdicts(self) -> dict[str, Verdict]:
        """The index's verdicts, validated (the index is written only from valid ones)."""
        return {tid: parse_verdict(json.loads(v), f"{self.out_dir / INDEX} ({tid})",
                                   trial_id=tid)
                for tid, v in self.db.execute(
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

    def record(self, trial_id: str, verdict: Verdict) -> str:
        """Finish a trial: verdict file first (if the trial did not write it), then the index."""
        folder = self.folder(trial_id)
        if not (folder / VERDICT).exists():
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_json(folder / VERDICT, verdict.document())
        status = status_of(verdict)
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self._finish(trial_id, verdict, status)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return status

    def _finish(self, trial_id: str, verdict: Verdict, status: str) -> None:
        self.db.execute(
            "UPDATE trials SET status=?, verdict_json=?, finished_at=? WHERE trial_id=?",
            (status, verdict.model_dump_json(), verdict.finished_at or now(), trial_id))


def load_rows(out_dir: Path) -> Rows:
    """Every trial of a results folder, read-only: from the index, else from verdict files.
    Each verdict is migrated and validated; one that does not validate is in `invalid`, by
    path and field, and its trial is left out of `rows`."""
    out_dir = Path(out_dir)
    found = Rows()
    if (out_dir / INDEX).exists():
        db = sqlite3.connect(f"file:{out_dir / INDEX}?mode=ro", uri=True)
        try:
            cur = db.execute('SELECT trial_id, model, scenario, "index", status, verdict_json, '
                             "started_at, finished_at, attempt FROM trials ORDER BY trial_id")
            cols = [c[0] for c in cur.description]
            raw = [dict(zip(cols, r, strict=True)) for r in cur]
        except sqlite3.DatabaseError as exc:  # a corrupt or foreign file
            raise InvalidFile(out_dir / INDEX, [f"(file): not a results index ({exc})"]) \
                from None
        finally:
            db.close()
        for row in raw:
            text = row.pop("verdict_json")
            tid = str(row["trial_id"])
            try:
                verdict = None if text is None else parse_verdict(
                    json.loads(text), f"{out_dir / INDEX} (trial {tid})", trial_id=tid,
                    model=str(row["model"]), scenario=str(row["scenario"]))
            except (InvalidFile, ValueError) as exc:
                found.invalid.append(exc if isinstance(exc, InvalidFile) else InvalidFile(
                    f"{out_dir / INDEX} (trial {tid})", [f"(document): not JSON ({exc})"]))
                continue
            found.rows.append(TrialRow(**row, verdict=verdict))  # type: ignore[typeddict-item]
        return found
    for path in sorted(out_dir.glob(f"*/{VERDICT}")):
        try:
            verdict = read_verdict(path, trial_id=path.parent.name)
        except InvalidFile as exc:
            found.invalid.append(exc)
            continue
        found.rows.append(TrialRow(
            trial_id=path.parent.name, model=verdict.model, scenario=verdict.scenario,
            index=None, status=status_of(verdict), verdict=verdict,
            started_at=verdict.started_at, finished_at=verdict.finished_at, attempt=1))
    return found
