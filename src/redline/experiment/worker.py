"""What runs where a trial runs (a local worker process or a Ray task): the trial, with any
exception turned into a verdict that says so, so that every trial ends with one.

Its own module so that both backends (runner.py's local pool, raybackend.py) import it and
neither imports the other.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from pathlib import Path

from redline.contracts.verdict import Verdict
from redline.trial import TrialSpec, VerdictNotKept

TrialFn = Callable[[TrialSpec, Path], Verdict]


def error_verdict(spec: TrialSpec, trial_id: str, message: str) -> Verdict:
    """A verdict for a trial the harness could not run: every trial ends with one."""
    verdict = spec.verdict(trial_id)
    verdict.failed(message)
    return verdict.finish()


def execute_trial(trial_fn: TrialFn, spec: TrialSpec, out_dir: str,
                  gpu_ids: list[str] | None = None) -> Verdict:
    """Runs inside a worker or Ray task; turns an exception into an error verdict. The GPUs
    handed to it (indices or UUIDs) are what this process may use: the trial picks its own
    from them (trial/gpuplan.py), for this trial only: a worker process runs many trials, and
    a CPU trial after a GPU one must not inherit its GPUs."""
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    if gpu_ids is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_ids)
    try:
        return trial_fn(spec, Path(out_dir))
    except VerdictNotKept as exc:  # the trial ran: the store writes its verdict, or says why not
        return exc.verdict
    except Exception as exc:  # noqa: BLE001
        tb = traceback.format_exc(limit=5)
        return error_verdict(spec, spec.trial_id or Path(out_dir).name,
                             f"harness: {type(exc).__name__}: {exc}\n{tb}")
    finally:
        if before is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = before
