"""Live view of one trial: step number and the last action, from the agent's own trace."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from redline.cliapp import SETTINGS, plural
from redline.contracts.verdict import UNOBSERVED, Verdict


class TrialProgress:
    """Progress lines of one trial (text from the trace is printed literally, never as
    markup); `-v` adds every model call with its latency."""

    def __init__(self, console: Console, label: str) -> None:
        self.console, self.label = console, label
        self.status = console.status(f"{label}: starting sandbox and AI system ...")
        self.step = 0

    def __enter__(self) -> TrialProgress:
        self.status.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.status.__exit__(*exc)

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "llm_call":
            self.step = event.get("step", self.step)
            self.status.update(f"{self.label}: step {self.step}: thinking ...")
            if SETTINGS.verbosity > 0:
                self.console.log(f"step {self.step}: model call, {event.get('latency_s')} s"
                                 + (f", error: {event.get('error')}" if event.get("error")
                                    else ""), markup=False)
        elif kind == "tool_call":
            cmd = str(event.get("command") or event.get("tool"))[:70]
            self.console.log(f"step {event.get('step')}: [{event.get('status_code')}] {cmd}",
                             markup=False)
        elif kind == "format_error":
            self.console.log(f"step {event.get('step')}: format error", markup=False)
        elif kind == "finish":
            self.console.log(f"step {event.get('step')}: finish: {event.get('message')!s:.80}",
                             markup=False)
        elif kind == "run_end":
            self.status.update(f"{self.label}: agent done ({event.get('reason')}); judging ...")


def verdict_table(verdicts: list[Verdict]) -> Table:
    """One row per trial; for a few trials, one column per trial, so it fits 80 columns."""
    mark = {True: "[green]yes[/]", False: "[red]no[/]", None: UNOBSERVED}
    fields = [
        ("model", lambda v: escape(v.model)),
        ("scenario", lambda v: escape(v.scenario)),
        ("setup", lambda v: escape(v.setup or "")),
        ("protocol", lambda v: escape(v.protocol)),
        ("replicated", lambda v: mark[v.replicated]),
        ("agreed", lambda v: mark[v.agreed]),
        ("knows how", lambda v: mark[v.knows_how]),
        ("claimed", lambda v: mark[v.claimed_success]),
        ("false claim", lambda v: mark[v.false_claim]),
        ("steps", lambda v: str(v.steps)),
        ("time (s)", lambda v: f"{v.duration_s or 0:.1f}"),
        ("error", lambda v: escape((v.error or "")[:200])),
    ]
    table = Table(title="redline verdicts")
    if len(verdicts) <= 3:
        table.add_column("trial", no_wrap=True)
        for v in verdicts:
            table.add_column(escape(v.trial_id), overflow="fold")
        for name, get in fields:
            table.add_row(name, *[get(v) for v in verdicts])
        return table
    table.add_column("trial", overflow="fold")
    for name, _ in fields:
        table.add_column(name, overflow="fold")
    for v in verdicts:
        table.add_row(escape(v.trial_id), *[get(v)[-40:] if name == "model" else get(v)[:60]
                                    for name, get in fields])
    return table


class GridProgress:
    """Live view of a grid: running, finished and failed trials, successes so far per cell.

    A Listener for run_experiment; a log line per finished trial survives in non-terminal output.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live: Live | None = None
        self.cells: dict[tuple[str, str], dict[str, int]] = {}
        self.started_at = time.monotonic()
        self.slots = 0

    def begin(self, jobs: list[Any], statuses: dict[str, str], slots: int,
              verdicts: dict[str, Verdict]) -> None:
        self.slots = slots
        for job in jobs:
            c = self.cells.setdefault((job.model, job.scenario), Counter())
            c["total"] += 1
            c[statuses.get(job.trial_id, "pending")] += 1
            known = verdicts.get(job.trial_id)
            c["replicated"] += known is not None and known.replicated
        todo = sum(c["pending"] for c in self.cells.values())
        self.console.print(f"{len(jobs)} trials, {len(jobs) - todo} already finished, "
                           f"{todo} to run, {slots} at a time")
        self.live = Live(self._render(), console=self.console, refresh_per_second=2,
                         transient=False)
        self.live.start()

    def _cell(self, job: Any) -> dict[str, int]:
        return self.cells[(job.model, job.scenario)]

    def started(self, job: Any) -> None:
        c = self._cell(job)
        c["pending"] -= 1
        c["running"] += 1
        self._refresh()

    def finished(self, job: Any, verdict: Verdict, status: str) -> None:
        c = self._cell(job)
        c["running"] -= 1
        c[status] += 1
        c["replicated"] += verdict.replicated
        mark = "[red]error[/]" if status == "error" else (
            "[green]replicated[/]" if verdict.replicated else "not replicated")
        extra = (f": {escape((verdict.error or '').splitlines()[0][:80])}" if status == "error"
                 else "")
        self.console.log(f"{escape(job.trial_id)}: {mark} ({plural(verdict.steps, 'step')}, "
                         f"{verdict.duration_s or 0:.1f} s){extra}")
        self._refresh()

    def requeued(self, job: Any, reason: str) -> None:
        c = self._cell(job)
        c["running"] -= 1
        c["pending"] += 1
        self.console.log(f"[yellow]{job.trial_id}: worker died ({reason[:80]}); queued again[/]")
        self._refresh()

    def stop(self) -> None:
        if self.live:
            self.live.update(self._render())
            self.live.stop()
            self.live = None

    def _refresh(self) -> None:
        if self.live:
            self.live.update(self._render())

    def _render(self) -> Table:
        tot = Counter()
        for c in self.cells.values():
            tot.update(c)
        elapsed = time.monotonic() - self.started_at
        table = Table(title=f"running {tot['running']} / {self.slots} slots, finished "
                            f"{tot['done'] + tot['error']}/{tot['total']}, failed {tot['error']}"
                            f", {elapsed:.0f} s")
        for col in ("model", "scenario", "finished", "running", "failed", "replicated"):
            table.add_column(col, justify="left" if col in ("model", "scenario") else "right")
        for (model, scenario), c in sorted(self.cells.items()):
            judged = c["done"]
            table.add_row(model[-40:], scenario, f"{c['done'] + c['error']}/{c['total']}",
                          str(c["running"]), str(c["error"]) if c["error"] else "0",
                          f"{c['replicated']}/{judged}" if judged else "-")
        return table
