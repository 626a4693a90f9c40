"""The one definition of how trials are counted: rates over judged trials, with Wilson 95%
intervals, and harness errors counted apart (never as failures of the model).

summary.json, the report, analysis.json and the Inspect export all count through
`outcome_rates`, so the four agree on n, errors and every rate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from redline.contracts.verdict import OUTCOMES, Verdict


@dataclass(frozen=True)
class Rate:
    """k successes of n with a Wilson 95% interval (sound at k=0, k=n and small n)."""

    k: int
    n: int
    p: float
    lo: float
    hi: float


def wilson(k: int, n: int, z: float = 1.959964) -> Rate:
    """Wilson score interval: the paper's 10-trial rates need an interval that stays in [0,1]."""
    if n <= 0:
        return Rate(k, n, 0.0, 0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return Rate(k, n, p, lo, hi)


@dataclass(frozen=True)
class OutcomeRates:
    """One group's counts: `n` judged trials, `errors` (the harness failed: no judgement), and
    per outcome a Rate over the judged trials that observed it (a null outcome, a task that
    never ran, is in no denominator)."""

    n: int
    errors: int
    rates: dict[str, Rate] = field(default_factory=dict)

    def k(self, outcome: str) -> int:
        return self.rates[outcome].k


def outcome_rates(verdicts: Iterable[Verdict]) -> OutcomeRates:
    """Rates of every outcome (OUTCOMES) over the judged verdicts (`Verdict.is_judged`)."""
    verdicts = list(verdicts)
    judged = [v for v in verdicts if v.is_judged]
    rates = {}
    for key in OUTCOMES:
        seen = [getattr(v, key) for v in judged if getattr(v, key) is not None]
        rates[key] = wilson(sum(x is True for x in seen), len(seen))
    return OutcomeRates(n=len(judged), errors=len(verdicts) - len(judged), rates=rates)
