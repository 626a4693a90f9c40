"""The numbers behind every plot, computed without drawing anything.

Kept apart from plots.py so tests can check each figure's data against the traces, and so
other tools can reuse the numbers (the report also prints them as tables).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from redline.analysis.commands import CATEGORIES, OTHER, classify
from redline.analysis.trace import Step, Trial
from redline.contracts import rates
from redline.contracts.rates import Rate, wilson
from redline.contracts.verdict import OUTCOMES

__all__ = ["Rate", "wilson"]  # the one Wilson interval (redline.contracts.rates), used here

# The three outcomes the paper scores per trial, in its order (a subset of OUTCOMES).
PAPER_OUTCOMES = ("agreed", "knows_how", "replicated")
assert set(PAPER_OUTCOMES) <= set(OUTCOMES)
MILESTONES = ("explored_folder", "copied_files", "started_llm_server", "started_agent",
              "checked_replica")
ACTION_TYPES = ("background", "receive", "immediate")
CHARS_PER_TOKEN = 4


def _groups(trials: list[Trial], key: Any) -> dict[Any, list[Trial]]:
    out: dict[Any, list[Trial]] = {}
    for t in trials:
        out.setdefault(key(t), []).append(t)
    return out


def outcome_rates(trials: list[Trial]) -> list[dict[str, Any]]:
    """Per model x scenario x protocol: n judged trials, errors, and every outcome's rate,
    counted as summary.json counts them (`redline.contracts.rates.outcome_rates`)."""
    rows = []
    trials = [t for t in trials if t.has_verdict]
    cells = _groups(trials, lambda t: (t.model, t.scenario, t.protocol))
    for (model, scenario, protocol), group in sorted(cells.items()):
        counted = rates.outcome_rates(t.verdict for t in group if t.verdict is not None)
        row: dict[str, Any] = {"model": model, "scenario": scenario, "protocol": protocol,
                               "n": counted.n, "errors": counted.errors}
        for o in OUTCOMES:
            row[o] = counted.rates[o]
        rows.append(row)
    return rows


def action_types(trial: Trial) -> dict[str, int]:
    """Background runs (long_running executes), receives and immediate (one_time) runs."""
    counts = Counter(s.kind for s in trial.steps)
    return {k: counts.get(k, 0) for k in ACTION_TYPES}


def action_type_table(trials: list[Trial]) -> list[dict[str, Any]]:
    """One row per trial: its action-type counts, for the box plots."""
    return [{"trial_id": t.trial_id, "model": t.model, "scenario": t.scenario,
             "replicated": t.replicated, **action_types(t)} for t in trials]


def command_categories(trials: list[Trial]) -> Counter[str]:
    """Simple commands per category over the trials' executed command lines."""
    counts: Counter[str] = Counter({c: 0 for c in (*CATEGORIES, OTHER)})
    for t in trials:
        for s in t.steps:
            if s.command:
                counts.update(p.category for p in classify(s.command))
    return counts


def category_shares(trials: list[Trial]) -> list[dict[str, Any]]:
    """Per model, shares of the four categories in all trials and in replicated ones.

    The paper counted successful runs only; both are shown. `other` (unrecognised programs)
    is reported but left out of the shares' denominator.
    """
    rows = []
    for model, group in sorted(_groups(trials, lambda t: t.model).items()):
        for subset, ts in (("all", group), ("replicated", [t for t in group if t.replicated])):
            counts = command_categories(ts)
            total = sum(counts[c] for c in CATEGORIES)
            rows.append({"model": model, "subset": subset, "trials": len(ts),
                         "counts": dict(counts), "total": total,
                         "shares": {c: (counts[c] / total if total else 0.0)
                                    for c in CATEGORIES}})
    return rows


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


def observation_tokens(trial: Trial) -> list[tuple[int, int, str]]:
    """(step, tokens, method) of the observation each step produced.

    Method `prompt_delta`: the next call's prompt_tokens minus this call's prompt_tokens and
    completion_tokens, i.e. what the observation added to the context as the model's own
    server counted it. Used when both calls report usage, no history was trimmed in between
    and the difference is positive. Otherwise `estimate`: the observation text's length / 4
    (the next call's last user message, or for the last step the tool's status and output).
    """
    out = []
    steps: list[Step] = trial.steps
    for i, s in enumerate(steps):
        nxt = steps[i + 1] if i + 1 < len(steps) else None
        p0, c0 = s.usage.get("prompt_tokens"), s.usage.get("completion_tokens")
        p1 = nxt.usage.get("prompt_tokens") if nxt else None
        if nxt is not None and None not in (p0, c0, p1) and nxt.trimmed == s.trimmed \
                and s.reply is not None and p1 - p0 - c0 > 0:
            out.append((s.step, int(p1 - p0 - c0), "prompt_delta"))
            continue
        if s.observation is None and (s.finish is not None or s.tool is None):
            out.append((s.step, 0, "none"))
            continue
        text = s.observation if s.observation is not None else s.output_text
        out.append((s.step, estimate_tokens(text or ""), "estimate"))
    return out


def cumulative_tokens(trials: list[Trial]) -> list[dict[str, Any]]:
    """One line per trial: steps and cumulative observation tokens, split by success."""
    rows = []
    for t in trials:
        per = observation_tokens(t)
        total, cum = 0, []
        for _, n, _ in per:
            total += n
            cum.append(total)
        rows.append({"trial_id": t.trial_id, "model": t.model, "scenario": t.scenario,
                     "replicated": t.replicated, "steps": [p[0] for p in per],
                     "tokens": [p[1] for p in per], "cumulative": cum,
                     "methods": sorted({p[2] for p in per})})
    return rows


def milestone_reach(trials: list[Trial]) -> list[dict[str, Any]]:
    """Per model: how many judged trials reached each milestone, and replication last."""
    rows = []
    trials = [t for t in trials if t.judged]
    for model, group in sorted(_groups(trials, lambda t: t.model).items()):
        reach = {m: wilson(sum(t.verdict is not None and t.verdict.milestones.get(m) is True
                               for t in group), len(group)) for m in MILESTONES}
        reach["replicated"] = wilson(sum(t.replicated for t in group), len(group))
        rows.append({"model": model, "n": len(group), "reach": reach})
    return rows
