"""Load one trial folder (trace.jsonl, verdict.json, evidence/) into steps.

A step is one round of the agent loop: the LLM call, the parsed reply (or a format error),
the tool call it caused and the observation sent back. The trace stores events, not steps,
so every analysis starts by folding events into steps here, in one place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redline import defaults
from redline.contracts.verdict import Verdict, read_verdict
from redline.judge.kernelrec.procconn import started_in
from redline.judge.trace_facts import first_run, main_run_id, run_ids
from redline.results import load_events

AGENT_FOLDER = defaults.FOLDER
REPLY_PARTS = ("explain", "gaps", "findings", "plan")


@dataclass
class Step:
    """One agent round; `tool` is the tool_call event as written, or None."""

    run_id: str
    step: int
    reply: str | None = None
    parsed: dict[str, Any] | None = None
    format_error: str | None = None
    tool: dict[str, Any] | None = None
    finish: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    llm_error: str | None = None
    latency_s: float | None = None
    n_context: int | None = None
    trimmed: int = 0
    ts: float | None = None
    observation: str | None = None  # the next llm_call's last user message

    @property
    def action(self) -> str | None:
        return (self.parsed or {}).get("action")

    @property
    def command(self) -> str | None:
        """The shell command this step ran, if it ran one."""
        if self.tool and self.tool.get("tool") == "execute_command_in_terminal":
            return str(self.tool.get("command") or "")
        return None

    @property
    def kind(self) -> str:
        """Action type as the paper counts them: background, receive, immediate, or other."""
        if not self.tool:
            return "finish" if self.finish is not None else "none"
        if self.tool.get("tool") == "receive_data_of_long_term_command_from_terminal":
            return "receive"
        return "background" if self.tool.get("command_type") == "long_running" else "immediate"

    @property
    def output_text(self) -> str:
        """What the tool said: status, stdout and stderr (used when no observation exists)."""
        if not self.tool:
            return ""
        t = self.tool
        return f"{t.get('status') or ''}\n{t.get('stdout') or ''}\n{t.get('stderr') or ''}"


@dataclass
class Trial:
    """A trial folder: the verdict (None: none yet), the primary run's steps and the evidence
    files; `status` is the experiment index's, where there is one."""

    trial_id: str
    path: Path | None
    verdict: Verdict | None
    steps: list[Step]
    run_start: dict[str, Any] = field(default_factory=dict)
    run_end: dict[str, Any] = field(default_factory=dict)
    other_runs: int = 0
    evidence: dict[str, Any] = field(default_factory=dict)
    truncated_trace: bool = False
    status: str | None = None
    name: str | None = None  # the model's name in its experiment (the index's), if it has one

    @property
    def model(self) -> str:
        """The model as tables and charts label it: the experiment's name, else the spec."""
        return self.name or (self.verdict.model if self.verdict else None) or str(
            self.run_start.get("model") or "unknown")

    @property
    def protocol(self) -> str:
        """How the agent and its model exchanged actions (docs/protocols.md)."""
        return (self.verdict.protocol if self.verdict else None) or str(
            self.run_start.get("protocol") or "text")

    @property
    def scenario(self) -> str:
        return self.verdict.scenario if self.verdict else "unknown"

    @property
    def replicated(self) -> bool:
        return self.verdict is not None and self.verdict.replicated

    @property
    def has_verdict(self) -> bool:
        """A running or crashed trial has none yet."""
        return self.verdict is not None

    @property
    def judged(self) -> bool:
        """Counted in rates: a verdict, and the harness did not fail (`Verdict.is_judged`)."""
        return self.verdict is not None and self.verdict.is_judged

    @property
    def task(self) -> str:
        return str(self.run_start.get("task") or "")


def fold_steps(events: list[dict[str, Any]]) -> tuple[list[Step], dict[str, Any], dict[str, Any]]:
    """Steps of one run's events in order, plus its run_start and run_end events."""
    steps: dict[int, Step] = {}
    start: dict[str, Any] = {}
    end: dict[str, Any] = {}
    last_llm: Step | None = None
    for e in events:
        kind = e.get("type")
        if kind == "run_start":
            start = e
            continue
        if kind == "run_end":
            end = e
            continue
        n = e.get("step")
        if not isinstance(n, int):
            continue
        s = steps.get(n)
        if s is None:
            s = steps[n] = Step(run_id=str(e.get("run_id")), step=n, ts=e.get("ts"))
        if kind == "llm_call":
            msgs = e.get("messages") or []
            if last_llm is not None and last_llm is not s and msgs:
                # the observation: the first tool message (native protocol: later ones only
                # say a further call was not run), else the last user message
                tool = [m for m in msgs if m.get("role") == "tool"]
                user = tool[:1] or [m for m in msgs if m.get("role") == "user"][-1:]
                if user:
                    last_llm.observation = str(user[-1].get("content") or "")
            if e.get("reply") is not None or s.reply is None:
                s.reply = e.get("reply")
            s.usage = e.get("usage") or s.usage or {}
            s.llm_error = e.get("error") or s.llm_error
            s.latency_s = e.get("latency_s")
            s.n_context = e.get("n_context")
            s.trimmed = int(e.get("trimmed") or 0)
            last_llm = s
        elif kind == "action":
            s.parsed = e.get("parsed") or {}
        elif kind == "format_error":
            s.format_error = str(e.get("error") or "")
            s.reply = s.reply or e.get("reply")
        elif kind == "tool_call":
            s.tool = e
        elif kind == "finish":
            s.finish = str(e.get("message") or "")
    return [steps[k] for k in sorted(steps)], start, end


def primary_run(events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The task's run (trace_facts.first_run: never a judge's tool task) and how many other
    runs the trace holds."""
    ids = run_ids(events)
    if not ids:
        return events, 0
    return first_run(events), len(ids) - (1 if main_run_id(events) else 0)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def load_evidence(folder: Path) -> dict[str, Any]:
    """Small evidence files the analyses use (baseline pids and ports), and all file names."""
    out: dict[str, Any] = {"files": []}
    if not folder.is_dir():
        return out
    out["files"] = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    for name in ("baseline.json", "baseline_processes.json", "judge.json", "kernel_record.json"):
        data = _read_json(folder / name)
        if data is not None:
            out[name.removesuffix(".json")] = data
    return out


def processes_of(trial: Trial, step: Step) -> list[dict[str, Any]] | None:
    """Every process the step's command started, from the kernel record (evidence): the
    original agent's terminals forked while the command ran, and all they started, however
    detached (None: no record, or no command)."""
    record, base = trial.evidence.get("kernel_record"), trial.evidence.get("baseline") or {}
    tool = step.tool or {}
    clock = (record or {}).get("clock") or {}
    if step.command is None or not record or not base.get("agent_pid") or not clock or \
            not isinstance(tool.get("ts"), int | float):
        return None
    offset = clock["unix"] - clock["monotonic"]  # the trace's clock minus the kernel's
    end = tool["ts"] - offset
    start = end - float(tool.get("duration_s") or 0)
    # the terminal is forked as the command starts, shortly before its clock starts
    return started_in(record.get("processes") or [], base["agent_pid"], start - 0.005, end)


def trace_is_torn(path: Path) -> bool:
    """True when the last line does not parse: the agent died mid-write."""
    if not path.exists() or path.stat().st_size == 0:
        return False
    tail = path.read_bytes()[-65536:].decode("utf-8", errors="replace").rstrip("\n")
    last = tail.rsplit("\n", 1)[-1]
    try:
        json.loads(last)
    except json.JSONDecodeError:
        return True
    return False


def load_trial(folder: Path, verdict: Verdict | None = None, **fallback: str) -> Trial:
    """A trial folder; a missing verdict or trace gives an empty one. A verdict.json that
    does not validate raises InvalidFile (never shown as something it is not); `fallback`
    fills fields an earlier writer left out (`parse_verdict`)."""
    folder = Path(folder)
    if verdict is None and (folder / "verdict.json").exists():
        verdict = read_verdict(folder / "verdict.json", **{"trial_id": folder.name, **fallback})
    events = load_events(folder / "trace.jsonl")
    run, others = primary_run(events)
    steps, start, end = fold_steps(run)
    return Trial(
        trial_id=verdict.trial_id if verdict else folder.name, path=folder, verdict=verdict,
        steps=steps, run_start=start, run_end=end, other_runs=others,
        evidence=load_evidence(folder / "evidence"),
        truncated_trace=trace_is_torn(folder / "trace.jsonl"),
    )
