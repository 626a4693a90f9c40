"""The harness itself killed, its output folder misbehaving: nothing lost, nothing left behind
(issue 31). Each case says what was kept, what was cleaned (no process, cgroup, mount or store of
the trial left) and the exit code; SIGINT, SIGTERM and SIGHUP mid-trial are in test_cli.py.

Everything here is started by the test itself and ended by the PIDs it started, never by name.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from helpers import CONTROLS, run, sandbox_ids, step

from redline.sandbox import cgroups
from redline.sandbox.hostroot import NEUTRAL_ROOT, store_root
from redline.trial import TrialSpec, run_trial

pytestmark = [pytest.mark.sandbox,
              pytest.mark.skipif(os.geteuid() != 0, reason="cgroups and mounts need root")]
POSITIVE = CONTROLS / "replicate-positive.yaml"
# A harness that starts one sandbox and says its id first (so a test knows what to look for).
START_ONE = """import sys, time
from redline.sandbox import Sandbox, SandboxConfig
sb = Sandbox(SandboxConfig(keep="never"), sys.argv[1])
print(sb.id, flush=True)
sb.start()
print("up", flush=True)
time.sleep(120)
"""


def _cgroup_folders(sandbox_id: str) -> list[Path]:
    return cgroups.everywhere(f"sb-{sandbox_id}")


def _members(sandbox_id: str) -> list[int]:
    return sorted({p for f in _cgroup_folders(sandbox_id) for p in cgroups.members(f)})


def _next_start(tmp_path: Path) -> None:
    """What any later harness does first: a sandbox of its own (which sweeps what dead
    harnesses left), in a fresh process."""
    done = subprocess.run([sys.executable, "-m", "redline.cli", "sandbox", "exec", "--", "true"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def test_a_harness_killed_while_its_sandbox_starts_leaves_nothing_once_another_starts(
        tmp_path: Path) -> None:
    """SIGKILL at moments spread over the sandbox's start: bubblewrap sets die-with-parent in
    each of its processes in turn, so one killed in between can leave the next one waiting,
    alive, in the sandbox's cgroup. The next harness's start kills what is left of it (its lock
    is free) and removes its cgroup and store."""
    ids, up = [], 0
    for i in range(8):
        proc = subprocess.Popen([sys.executable, "-c", START_ONE, str(tmp_path / f"sb{i}")],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        ids.append(proc.stdout.readline().strip())
        time.sleep(random.Random(i).uniform(0.0, 0.6))
        up += proc.poll() is None and bool(_members(ids[-1]))
        proc.kill()  # the process this test started, by its PID
        proc.wait()
    _next_start(tmp_path)
    left = {i: (_members(i), [str(f) for f in _cgroup_folders(i)]) for i in ids}
    assert not {i: v for i, v in left.items() if v != ([], [])}, left
    stores = [NEUTRAL_ROOT / i for i in ids]
    assert not [s for s in stores if s.exists()]


def _run_in_background(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "redline.cli", *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_trace(folder: Path, proc: subprocess.Popen, pattern: str = "*/trace.jsonl",
                    count: int = 1) -> None:
    deadline = time.monotonic() + 120
    while sum(p.stat().st_size > 0 for p in folder.glob(pattern)) < count:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)


def test_kill_9_mid_trial_kills_the_sandbox_and_the_next_start_keeps_its_files(
        tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _run_in_background(tmp_path, "run", "--model", f"scripted:{POSITIVE}", "--out",
                              str(out))
    _wait_for_trace(out, proc)
    inside = psutil.Process(proc.pid).children(recursive=True)
    (sandbox_id,) = sandbox_ids(inside)
    proc.kill()
    proc.wait()
    _, alive = psutil.wait_procs(inside, timeout=15)
    assert not alive, [p.pid for p in alive]  # the sandbox died with its harness
    _next_start(tmp_path)
    assert _cgroup_folders(sandbox_id) == []
    (trial,) = [p for p in out.iterdir() if p.is_dir()]
    home = trial / "sandbox" / "home"
    assert home.is_dir() and not home.is_symlink()  # the agent's home came back, kept
    assert (home / "agent" / "log" / "trace.jsonl").stat().st_size > 0
    assert not (NEUTRAL_ROOT / sandbox_id).exists()


GRID = """name = "faults"
trials = 2
parallel = 2
scenarios = ["replicate"]
[[models]]
model = "scripted:{model}"
[resources]
cpus = 1
memory_mb = 1024
[judge]
survival_s = {survival}
"""


def test_sigterm_mid_experiment_states_the_stopped_trials_and_a_resume_runs_them_again(
        tmp_path: Path) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID.format(model=POSITIVE, survival=90))  # both still run when stopped
    out = tmp_path / "out"
    proc = _run_in_background(tmp_path, "experiment", "run", str(grid), "--out", str(out))
    _wait_for_trace(out, proc, count=2)
    inside = psutil.Process(proc.pid).children(recursive=True)
    ids = sandbox_ids(inside)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 143, stderr
    assert "interrupted (SIGTERM)" in stderr and "Traceback" not in stderr
    stopped = [json.loads(p.read_text()) for p in out.glob("*/verdict.json")]
    assert stopped and all(v["interrupted"] == "SIGTERM" for v in stopped)
    _, alive = psutil.wait_procs(inside, timeout=15)
    assert not alive and ids and all(_cgroup_folders(i) == [] for i in ids)
    grid.write_text(GRID.format(model=POSITIVE, survival=3))
    again = subprocess.run([sys.executable, "-m", "redline.cli", "experiment", "run",
                            str(grid), "--out", str(out)], capture_output=True, text=True,
                           timeout=600, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    done = [json.loads(p.read_text()) for p in out.glob("*/verdict.json")]
    assert len(done) == 2 and all(v["interrupted"] is None and v["error"] is None and
                                  v["replicated"] for v in done)


def _trial(tmp_path: Path, out: Path, replies: list[str]) -> dict:
    model = tmp_path / "m.yaml"
    model.write_text(yaml.safe_dump([{"match": "Replicate yourself", "responses": replies}]))
    return run_trial(TrialSpec(model=f"scripted:{model}", time_limit_s=60), out).document()


def test_out_on_a_bind_mount_of_the_same_filesystem_keeps_everything(tmp_path: Path) -> None:
    """A bind mount refuses a rename (EXDEV) although its filesystem is the store's: the
    agent's home is copied back, checked, and only then is the store removed."""
    real, bound = tmp_path / "real", tmp_path / "bound"
    real.mkdir()
    bound.mkdir()
    subprocess.run(["mount", "--bind", str(real), str(bound)], check=True)
    try:
        out = bound / "t"
        assert store_root(out) == NEUTRAL_ROOT  # the same filesystem: the neutral store
        v = _trial(tmp_path, out, [run("echo kept > /root/note.txt"),
                                   step("finish", message="done")])
        assert v["error"] is None
        home = out / "sandbox" / "home"
        assert (home / "note.txt").read_text() == "kept\n" and not home.is_symlink()
        assert (home / "agent" / "log" / "trace.jsonl").stat().st_size > 0
        assert not list((out / "sandbox").glob(".*.moving"))
        sandbox_id = Path(v["limits"]["memory"]["path"]).name.removeprefix("sb-")
        assert not (NEUTRAL_ROOT / sandbox_id).exists()  # the store went, once emptied
    finally:
        subprocess.run(["umount", "-l", str(bound)], check=False)


def test_a_trial_folder_made_immutable_mid_trial_loses_no_verdict(tmp_path: Path) -> None:
    """The trial's folder refuses new files once the trial runs (`chattr +i`): the judged
    verdict goes to stdout, whole, and to the fallback folder; the one line names the path and
    the reason; exit 4 (the machine refused), never 3; no temporary file is left."""
    out = tmp_path / "run"
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-m", "redline.cli", "run", "--model", f"scripted:{POSITIVE}",
         "--out", str(out)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "XDG_STATE_HOME": str(state)})
    _wait_for_trace(out, proc)
    (trial,) = [p for p in out.iterdir() if p.is_dir()]
    if subprocess.run(["chattr", "+i", str(trial)], capture_output=True).returncode != 0:
        proc.kill()
        proc.wait()
        pytest.skip("this filesystem has no immutable flag")
    try:
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        subprocess.run(["chattr", "-i", str(trial)], check=False)
    assert proc.returncode == 4, stderr
    verdict = json.loads(stdout)
    assert verdict["replicated"] is True and verdict["error"] is None  # judged, and kept
    (line,) = [x for x in stderr.splitlines() if x.startswith("error: ")]
    assert f"could not be written to {trial}/verdict.json (not permitted)" in line, line
    (fallback,) = (state / "redline" / "unsaved").glob("*.verdict.json")
    assert json.loads(fallback.read_text()) == verdict
    assert not list(trial.glob(".verdict.json.*.tmp")) and not (trial / "verdict.json").exists()
    assert (trial / "sandbox" / "home" / "agent" / "log" / "trace.jsonl").stat().st_size > 0
