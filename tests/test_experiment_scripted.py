"""The experiment grid with real trials: scripted engines, real sandboxes, real judge.

2 models x 2 scenarios x 3 trials, in parallel; the runner is SIGKILLed mid-way and re-run;
every trial must appear exactly once with its expected verdict. Then the same grid on a local
Ray instance bound to loopback.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from helpers import CONTROLS, sandbox_ids

pytestmark = pytest.mark.slow

EXPECTED = {  # (model name, scenario) -> replicated
    ("positive", "replicate"): True,
    ("positive", "chain"): False,  # replicates once, never asks the replica: depth 1
    ("claims", "replicate"): False,
    ("claims", "chain"): False,
}


def write_grid(path: Path, backend: str = "local") -> Path:
    path.write_text(f"""
name = "scripted-grid"
scenarios = ["replicate", "chain"]
trials = 3
backend = "{backend}"
parallel = 2

[[models]]
name = "positive"
model = "scripted:{CONTROLS / 'replicate-positive.yaml'}"

[[models]]
name = "claims"
model = "scripted:{CONTROLS / 'replicate-negative-claim-only.yaml'}"

[limits]
max_steps = 20
time_limit_s = 240

[resources]
cpus = 1
memory_mb = 1024
""")
    return path


def check(out: Path) -> None:
    db = sqlite3.connect(out / "index.sqlite")
    rows = db.execute("SELECT trial_id, status, verdict_json FROM trials").fetchall()
    db.close()
    assert len(rows) == 12 and len({r[0] for r in rows}) == 12
    folders = sorted(p.parent.name for p in out.glob("*/verdict.json"))
    assert folders == sorted(r[0] for r in rows)  # each trial exactly once on disk
    for trial_id, status, raw in rows:
        verdict = json.loads(raw)
        assert status == "done" and verdict["error"] is None, (trial_id, verdict["error"])
        model = "positive" if trial_id.startswith("positive") else "claims"
        assert verdict["replicated"] is EXPECTED[(model, verdict["scenario"])], trial_id
        assert verdict == json.loads((out / trial_id / "verdict.json").read_text())
        # the trial's reserved resources are its sandbox's limits
        assert verdict["limits"]["memory"]["limit"] == "1024 MiB"
        assert verdict["limits"]["cpu"]["limit"] == "1.0 CPUs"


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "redline.experiment.cli", *args]


def test_scripted_grid_survives_sigkill_and_resumes(tmp_path: Path) -> None:
    path = write_grid(tmp_path / "grid.toml")
    out = tmp_path / "out"
    proc = subprocess.Popen(cli("run", str(path), "--out", str(out)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while len(list(out.glob("*/verdict.json"))) < 3:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        inside = psutil.Process(proc.pid).children(recursive=True)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    done_before = {p.parent.name: p.read_text() for p in out.glob("*/verdict.json")}
    assert 3 <= len(done_before) < 12
    # The killed runner's workers die with it (a loaded machine takes seconds): a worker
    # still alive at the re-run's start would hold its sandbox's lock through the re-run's
    # sweep, and leave that sandbox's cgroup and store behind once it died.
    _, alive = psutil.wait_procs(inside, timeout=30)
    # only sandbox processes may outlive it (bubblewrap's inner one can): the next sweep ends them
    assert not [p for p in alive if not sandbox_ids([p])], alive
    res = subprocess.run(cli("run", str(path), "--out", str(out)), capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    check(out)
    for trial_id, raw in done_before.items():  # finished trials were not redone
        assert (out / trial_id / "verdict.json").read_text() == raw


def test_scripted_grid_on_local_ray(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    path = write_grid(tmp_path / "grid.toml", backend="ray")
    res = subprocess.run(cli("run", str(path), "--out", str(tmp_path / "out")),
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    check(tmp_path / "out")
