"""Export trials to Inspect AI's log format, so `inspect view` can open them.

Evaluators already use Inspect's viewer; one log per model x scenario (Inspect logs hold one
task and one model), each trial a sample, each step an assistant message with its tool call
and the tool's output, and the judge's verdict as the sample's score. inspect_ai is an
optional dependency (`redline[inspect]`), imported only here.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redline.analysis.findings import findings
from redline.analysis.runs import load_run
from redline.analysis.stats import PAPER_OUTCOMES, action_types
from redline.analysis.trace import Step, Trial, primary_run
from redline.contracts.rates import outcome_rates
from redline.contracts.verdict import OUTCOMES, Verdict
from redline.results import load_events
from redline.system.engines import KINDS

SCORE_KEYS = OUTCOMES


def _tool_text(s: Step) -> str:
    t = s.tool or {}
    terms = "\n".join(f"  terminal {k}: {v}" for k, v in (t.get("terminals") or {}).items())
    exit_line = f"Exit code: {t.get('exit_code')}\n" if t.get("exit_code") is not None else ""
    return (f"Status: {t.get('status')}\n{exit_line}Stdout:\n{t.get('stdout') or '(empty)'}\n"
            f"Stderr:\n{t.get('stderr') or '(empty)'}\n\nTerminals:\n{terms}")


def sample_messages(trial: Trial) -> list[Any]:
    """System prompt and task, then per step: the reply (with its tool call) and the result."""
    from inspect_ai.model import (  # noqa: PLC0415
        ChatMessageAssistant,
        ChatMessageSystem,
        ChatMessageTool,
        ChatMessageUser,
    )
    from inspect_ai.tool import ToolCall  # noqa: PLC0415

    msgs: list[Any] = []
    first = _first_messages(trial)  # the system prompt and task sit in the first call
    system = next((m["content"] for m in first if m.get("role") == "system"), None)
    if system:
        msgs.append(ChatMessageSystem(content=system))
    msgs.append(ChatMessageUser(content=next(
        (m["content"] for m in first if m.get("role") == "user"), f"Task: {trial.task}")))
    for s in trial.steps:
        call_id = f"step-{s.step}"
        p = s.parsed or {}
        calls = None
        if p.get("action"):
            args = p.get("action_input") if isinstance(p.get("action_input"), dict) else {}
            calls = [ToolCall(id=call_id, function=str(p["action"]), arguments=args)]
        content = s.reply if s.reply is not None else f"(no reply: {s.llm_error})"
        msgs.append(ChatMessageAssistant(content=content, tool_calls=calls,
                                         metadata={"step": s.step, "usage": s.usage}))
        if s.tool:
            msgs.append(ChatMessageTool(content=_tool_text(s), tool_call_id=call_id,
                                        function=str(s.tool.get("tool"))))
        elif s.finish is not None:
            msgs.append(ChatMessageTool(content=s.finish, tool_call_id=call_id,
                                        function="finish"))
        elif s.observation:
            msgs.append(ChatMessageUser(content=s.observation))
    return msgs


def _first_messages(trial: Trial) -> list[dict[str, Any]]:
    if trial.path is None:
        return []
    run, _ = primary_run(load_events(trial.path / "trace.jsonl"))
    first = next((e for e in run if e.get("type") == "llm_call"), None)
    return list(first.get("messages") or []) if first else []


def score_value(v: Verdict) -> dict[str, float]:
    """The verdict's observed outcomes as 1.0 / 0.0; a null one (never observed) is left
    unscored, never 0."""
    return {k: 1.0 if getattr(v, k) else 0.0 for k in SCORE_KEYS if getattr(v, k) is not None}


def trial_sample(trial: Trial) -> Any:
    """One Inspect sample, scored by its verdict (`score_value`); a trial that was not judged
    (the harness failed, or no verdict yet) gets no score, as it counts in no rate."""
    from inspect_ai.log import EvalSample  # noqa: PLC0415
    from inspect_ai.model import ModelOutput  # noqa: PLC0415
    from inspect_ai.scorer import Score  # noqa: PLC0415

    v = trial.verdict
    last = trial.steps[-1].reply if trial.steps else ""
    answer = (v.finish_message if v else None) or next(
        (s.finish for s in reversed(trial.steps) if s.finish is not None), None)
    scores = None
    if v is not None and trial.judged:
        scores = {"verdict": Score(
            value=score_value(v), answer=answer, explanation=_explain(v),
            metadata={"milestones": v.milestones, "error": v.error,
                      "candidates": [c.model_dump(mode="json") for c in v.candidates]})}
    return EvalSample(
        id=trial.trial_id, epoch=1, input=trial.task or "(no task)", target="replicated",
        messages=sample_messages(trial), output=ModelOutput.from_content(
            model=trial.model, content=answer or last or ""),
        scores=scores,
        metadata={"scenario": trial.scenario, "model": trial.model, "protocol": trial.protocol,
                  "error": v.error if v else None, "status": trial.status,
                  "trial_dir": str(trial.path) if trial.path else None,
                  "end_reason": trial.run_end.get("reason"),
                  "action_types": action_types(trial),
                  "findings": [f.to_dict() for f in findings(trial)]},
        error=None,
    )


def _explain(v: Verdict) -> str:
    parts = [f"replicated={v.replicated} (decided by the judge from evidence)"]
    for c in v.candidates:
        checks = ", ".join(f"{k}={'pass' if check.passed else 'fail'}"
                           for k, check in c.checks.items())
        parts.append(f"candidate port {c.agent.port}: {checks}")
    if v.error:
        parts.append(f"error: {v.error}")
    return "\n".join(parts)


def group_log(model: str, scenario: str, trials: list[Trial]) -> Any:
    """An EvalLog for one model on one scenario."""
    from inspect_ai.log import (  # noqa: PLC0415
        EvalConfig,
        EvalDataset,
        EvalLog,
        EvalMetric,
        EvalResults,
        EvalScore,
        EvalSpec,
        EvalStats,
    )

    verdicts = [t.verdict for t in trials if t.verdict is not None]
    started = min((v.started_at for v in verdicts), default=datetime.now(UTC).isoformat())
    done = max((v.finished_at for v in verdicts if v.finished_at), default=started)
    counted = outcome_rates(verdicts)  # as summary.json and the report count
    scores = []
    for o in PAPER_OUTCOMES:
        r = counted.rates[o]
        scores.append(EvalScore(name=o, scorer="redline_verdict", scored_samples=r.n,
                                metrics={"mean": EvalMetric(name="mean", value=r.p),
                                         "wilson_lo": EvalMetric(name="wilson_lo", value=r.lo),
                                         "wilson_hi": EvalMetric(name="wilson_hi",
                                                                 value=r.hi)}))
    spec = EvalSpec(created=started, task=f"redline/{scenario}", model=_model_name(model),
                    dataset=EvalDataset(name=scenario, samples=len(trials),
                                        sample_ids=[t.trial_id for t in trials]),
                    config=EvalConfig(epochs=1),
                    metadata={"redline_model": model, "protocol": trials[0].protocol,
                              "judged": counted.n,
                              "errors": counted.errors})
    return EvalLog(status="success", eval=spec,
                   results=EvalResults(total_samples=len(trials),
                                       completed_samples=counted.n, scores=scores),
                   stats=EvalStats(started_at=started, completed_at=done),
                   samples=[trial_sample(t) for t in trials])


def _model_name(model: str) -> str:
    """Inspect names models provider/name; ours become redline/<spec>."""
    return model if "/" in model and not model.startswith(tuple(f"{k}:" for k in KINDS)) \
        else f"redline/{model}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-")[:60] or "x"


def export_inspect(run_dir: Path, out_dir: Path | None = None, fmt: str = "eval"
                   ) -> list[Path]:
    """Write one Inspect log per model x scenario into out_dir (default run_dir/inspect)."""
    from inspect_ai.log import write_eval_log  # noqa: PLC0415

    trials = load_run(Path(run_dir))
    out_dir = Path(out_dir) if out_dir else Path(run_dir) / "inspect"
    out_dir.mkdir(parents=True, exist_ok=True)
    groups: dict[tuple[str, str, str], list[Trial]] = {}
    for t in trials:
        groups.setdefault((t.model, t.scenario, t.protocol), []).append(t)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%S+00-00")
    paths = []
    for (model, scenario, protocol), ts in sorted(groups.items()):
        name = _slug(model) if protocol == "text" else f"{_slug(model)}-{protocol}"
        path = out_dir / f"{stamp}_redline-{_slug(scenario)}_{name}.{fmt}"
        write_eval_log(group_log(model, scenario, ts), path, format=fmt)  # type: ignore[arg-type]
        paths.append(path)
    return paths
