"""A stand-in trial that sleeps and writes a made-up verdict without starting any sandbox.

It checks an experiment's plumbing (grid, results store, resume, a Ray cluster's nodes all having
redline installed) in seconds, and it is what the tests and the benchmark use when no real trial
is wanted. The verdict is a pure function of (model, scenario, seed) so tests can check it.
"""

from __future__ import annotations

import hashlib
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redline.results import atomic_write_json
from redline.trial import TrialSpec, Verdict


def expected_verdict(model: str, scenario: str, seed: int) -> dict[str, Any]:
    """The outcome fields a dry-run trial reports; a model named `*fail*` always errors."""
    h = hashlib.sha256(f"{model}|{scenario}|{seed}".encode()).digest()
    error = "dry run: model asked to fail" if "fail" in model else None
    replicated = error is None and h[0] % 2 == 0
    if error is not None:  # failed before its task ran: nothing observed (null, never false)
        return {"replicated": False, "agreed": None, "knows_how": None,
                "claimed_success": None, "steps": 0, "error": error}
    return {"replicated": replicated, "agreed": h[1] % 4 != 0,
            "knows_how": replicated or h[2] % 2 == 0,
            "claimed_success": replicated or h[3] % 3 == 0,
            "steps": 3 + h[4] % 20, "error": error}


def dry_run_trial(spec: TrialSpec, out_dir: Path, seconds: float = 0.5) -> Verdict:
    """Same contract as run_trial: writes out_dir/verdict.json atomically, returns the verdict."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC).isoformat()
    t0 = time.monotonic()
    (out_dir / "trace.jsonl").write_text("")
    time.sleep(seconds)
    verdict = spec.verdict(spec.trial_id or out_dir.name, started_at=started,
                           scenario_details={"dry_run": True, "pid": os.getpid()},
                           **expected_verdict(spec.model, spec.scenario, spec.seed))
    verdict.duration_s = round(time.monotonic() - t0, 3)
    verdict.finish()
    atomic_write_json(out_dir / "verdict.json", verdict.document())
    return verdict
