"""One trial: its spec, its run, its verdict. `experiment/` runs many of them.

The verdict types live in the leaf package `redline.contracts` (the judge and the scenarios
build them without importing this package); they are re-exported here for callers.
"""

from redline.contracts.verdict import Candidate, Check, Judgement, Outcome, Verdict
from redline.trial.run import VerdictNotKept, run_trial
from redline.trial.spec import Resources, TrialSpec

__all__ = ["Candidate", "Check", "Judgement", "Outcome", "Resources", "TrialSpec", "Verdict",
           "VerdictNotKept", "run_trial"]
