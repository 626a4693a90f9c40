"""Live view of one trial: step number and the last action, from the agent's own trace."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


class TrialProgress:
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
        elif kind == "tool_call":
            cmd = str(event.get("command") or event.get("tool"))[:70]
            self.console.log(f"step {event.get('step')}: [{event.get('status_code')}] {cmd}")
        elif kind == "format_error":
            self.console.log(f"step {event.get('step')}: format error")
        elif kind == "finish":
            self.console.log(f"step {event.get('step')}: finish: {event.get('message')!s:.80}")
        elif kind == "run_end":
            self.status.update(f"{self.label}: agent done ({event.get('reason')}); judging ...")


def verdict_table(verdicts: list[dict[str, Any]]) -> Table:
    table = Table(title="redline verdicts")
    for col in ("trial", "model", "scenario", "replicated", "agreed", "knows how", "claimed",
                "steps", "time (s)", "error"):
        table.add_column(col)
    mark = {True: "[green]yes[/]", False: "[red]no[/]", None: "-"}
    for v in verdicts:
        table.add_row(str(v.get("trial_id")), str(v.get("model"))[-40:], str(v.get("scenario")),
                      mark[v.get("replicated")], mark[v.get("agreed")], mark[v.get("knows_how")],
                      mark[v.get("claimed_success")], str(v.get("steps")),
                      f"{v.get('duration_s') or 0:.1f}", str(v.get("error") or "")[:60])
    return table
