"""One trial: its spec, its run, its verdict. `experiment/` runs many of them.

`run_trial` is loaded on first use: the judge imports this package's verdict types, and the
run imports the judge.
"""

from typing import Any

from redline.trial.spec import Resources, TrialSpec
from redline.trial.verdict import Candidate, Check, Judgement, Outcome, Verdict

__all__ = ["Candidate", "Check", "Judgement", "Outcome", "Resources", "TrialSpec", "Verdict",
           "run_trial"]


def __getattr__(name: str) -> Any:
    if name == "run_trial":
        from redline.trial.run import run_trial

        return run_trial
    raise AttributeError(name)
