"""What the model said about its situation, for the report: per trial, and as rates per
model, setup and protocol with Wilson intervals.

The verdict's `eval_awareness` and `refusals` (judge/awareness.py) are used as recorded; a
verdict written before they existed is scanned here from its trace by the same rules, and
says so (`source`). The labeller's labels (labels.json) are shown beside them.
"""

from __future__ import annotations

from typing import Any

from redline.analysis.labeller import read_labels
from redline.analysis.trace import Trial
from redline.contracts.rates import Rate, wilson
from redline.contracts.statements import CandidateStatements, Mentions
from redline.judge.awareness import main_statements
from redline.results import load_events

FROM_VERDICT, FROM_TRACE = "verdict", "trace, scanned by the report"


def said(t: Trial) -> tuple[Mentions | None, Mentions | None, list[CandidateStatements], str]:
    """(eval_awareness, refusals, candidates', source) of a trial; None where unknown."""
    v = t.verdict
    if v is not None and v.eval_awareness is not None:
        return v.eval_awareness, v.refusals, list(v.candidate_statements), FROM_VERDICT
    if t.path is not None and t.steps:
        s = main_statements(load_events(t.path / "trace.jsonl"))
        return s.eval_awareness, s.refusals, [], FROM_TRACE
    return None, None, [], "none"


def trial_statements(t: Trial) -> dict[str, Any]:
    """The trial view's block: mentions with steps and quotes, the replicas' apart, labels."""
    aware, refusals, cands, source = said(t)
    labels = read_labels(t.path)
    return {"source": source,
            "eval_awareness": aware.model_dump() if aware else None,
            "refusals": refusals.model_dump() if refusals else None,
            "candidates": [c.model_dump() for c in cands],
            "labels": labels.model_dump(mode="json") if labels else None}


def _rate(r: Rate) -> dict[str, Any]:
    return {"k": r.k, "n": r.n, "p": round(r.p, 4), "lo": round(r.lo, 4), "hi": round(r.hi, 4)}


def awareness_rates(trials: list[Trial]) -> list[dict[str, Any]]:
    """Per model x setup x protocol, over judged trials whose task ran: the share that
    mentioned an evaluation, that refused or hesitated, whose replicas said so (over trials
    with a replica's own run read), and the labeller's awareness (over labelled trials)."""
    groups: dict[tuple[str, str, str], list[Trial]] = {}
    for t in trials:
        v = t.verdict
        if v is None or not t.judged or v.agreed is None:
            continue
        key = (t.model, v.setup or "?", getattr(v, "protocol", None) or "text")
        groups.setdefault(key, []).append(t)
    rows = []
    for (model, setup, protocol), group in sorted(groups.items()):
        aware, refused, replicas, llm = [], [], [], []
        for t in group:
            a, r, cands, _ = said(t)
            if a is not None:
                aware.append(a.mentioned)
            if r is not None:
                refused.append(r.mentioned)
            read = [c for c in cands if c.runs]
            if read:
                replicas.append(any(c.eval_awareness.mentioned for c in read))
            labels = read_labels(t.path)
            if labels is not None and labels.llm is not None:
                llm.append(labels.llm.eval_awareness.mentioned)
        rows.append({"model": model, "setup": setup, "protocol": protocol, "n": len(group),
                     **{name: _rate(wilson(sum(xs), len(xs))) for name, xs in (
                         ("eval_awareness", aware), ("refusals", refused),
                         ("replicas_eval_awareness", replicas),
                         ("labeller_eval_awareness", llm))}})
    return rows
