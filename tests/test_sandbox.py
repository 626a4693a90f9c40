"""The sandbox's interface as the harness uses it: limits report, spawn/exec, the process and
port views, start from a worker thread, the CLI, GPU and Docker argument generation.

Only loopback inside the sandbox's own network namespace is touched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from redline.sandbox import Sandbox, SandboxConfig, SandboxError, make_sandbox, seccomp
from redline.sandbox import cgroups as cgroups_mod
from redline.sandbox import docker as docker_mod
from redline.sandbox.bwrap import gpu_args
from redline.sandbox.config import system_python
from redline.sandbox.docker import DockerSandbox, docker_run_args
from redline.sandbox.shadow import shadow_args


@pytest.fixture
def sandbox(tmp_path: Path):
    with Sandbox(SandboxConfig(keep="never"), tmp_path / "sb") as sb:
        yield sb


def test_limits_report_says_what_was_applied_and_how(tmp_path: Path) -> None:
    cfg = SandboxConfig(memory_mb=300, pids_max=40, cpus=1.5, disk_mb=100, wall_clock_s=60,
                        keep="never")
    with Sandbox(cfg, tmp_path / "sb") as sb:
        rep = sb.limits_report
        assert rep["not_applied"] == [] and rep["backend"] == "bubblewrap"
        assert rep["memory"] == {"applied": True, "limit": "300 MiB",
                                 "path": rep["memory"]["path"]}
        assert rep["pids"]["limit"] == "40 processes" and rep["cpu"]["limit"] == "1.5 CPUs"
        assert rep["disk"]["applied"] and "100 MiB" in rep["disk"]["limit"]
        assert rep["wall_clock"]["applied"] and rep["network"]["applied"]
        # the limits are really there, for the processes inside
        mem = Path(rep["memory"]["path"])
        if rep["cgroup_version"] == 1:
            assert int((mem / "memory.limit_in_bytes").read_text()) == 300 * 1024 * 1024
        pid = sb.spawn(["sleep", "30"])
        assert str(pid) in (mem / "cgroup.procs").read_text().split()
        path = rep["memory"]["path"]
    assert not Path(path).exists()  # cgroup removed at teardown


def test_a_limit_not_asked_for_is_reported_not_hidden(tmp_path: Path) -> None:
    with Sandbox(SandboxConfig(memory_mb=None, keep="never"), tmp_path / "sb") as sb:
        assert sb.limits_report["memory"] == {"applied": False, "reason": "not requested"}
        assert "memory" in sb.limits_report["not_applied"]


def test_started_from_a_short_lived_thread_survives_it(tmp_path: Path) -> None:
    """--die-with-parent follows the forking *thread*: bwrap is forked from a launcher thread."""
    box: dict[str, Sandbox] = {}

    def worker() -> None:
        sb = Sandbox(SandboxConfig(keep="never"), tmp_path / "sb")
        sb.start()
        box["sb"] = sb

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    time.sleep(0.3)
    sb = box["sb"]
    try:
        assert sb.exec(["echo", "alive"]).stdout == "alive\n"
    finally:
        assert sb.teardown()["leftover"] == 0


def test_spawn_logs_to_host_files_and_processes_are_described(sandbox: Sandbox,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "out.log"
    (sandbox.host_path("/root/agent") / "start.sh").write_text(
        "echo started; exec sleep 40 &\nsleep 41\n")
    pid = sandbox.spawn(["bash", "start.sh"], stdout_path=out)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:  # the output pump copies the pipe out asynchronously
        procs = {p.host_pid: p for p in sandbox.processes()}
        child = next((p for p in procs.values() if p.cmdline == ["sleep", "40"]), None)
        if child and out.exists() and out.read_text():
            break
        time.sleep(0.01)
    assert child is not None and out.read_text() == "started\n"
    me = procs[pid]
    assert me.cmdline == ["bash", "start.sh"] and me.cwd == "/root/agent"
    assert me.exe == "/usr/bin/bash" and me.ns_pid is not None and me.ns_pid < 50
    assert me.create_time is not None and abs(me.create_time - time.time()) < 30
    assert child.ppid == pid
    assert [p.host_pid for p in sandbox.parent_chain(child.host_pid)] == [pid]
    assert sandbox.contains(pid) and not sandbox.contains(os.getpid())


def test_kill_only_inside(sandbox: Sandbox) -> None:
    inner = sandbox.spawn(["sleep", "30"])
    outer = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        assert sandbox.kill([inner, outer.pid, os.getpid()], signal.SIGTERM) == [inner]
        time.sleep(0.1)
        assert outer.poll() is None
        assert inner not in [p.host_pid for p in sandbox.processes()]
    finally:
        os.killpg(outer.pid, signal.SIGKILL)
        outer.wait()


def test_host_path_maps_writable_areas_only(sandbox: Sandbox) -> None:
    assert sandbox.host_path("/root/agent/log") == sandbox.state_dir / "home" / "agent" / "log"
    assert sandbox.host_path("/tmp/x") == sandbox.state_dir / "tmp" / "x"
    with pytest.raises(SandboxError):
        sandbox.host_path("/usr/bin")


def test_hidden_tools_are_command_not_found_in_every_bin_folder(tmp_path: Path) -> None:
    cfg = SandboxConfig(hide_tools=["curl", "ip"], keep="never")  # /usr/bin and /usr/sbin
    with Sandbox(cfg, tmp_path / "sb") as sb:
        r = sb.exec(["bash", "-c", "curl --version; ip link; ls --version >/dev/null; echo $?"])
        assert r.stderr.count("command not found") == 2 and r.stdout.strip() == "0"
        assert sb.limits_report["hidden_tools"] == ["curl", "ip"]
    args = shadow_args(["ss"], dirs=("/usr/bin",))
    assert args[:3] == ["--ro-bind", "/usr/bin", "/.usr-bin"]
    assert not (Path(args[-2]) / "ss").exists() and (Path(args[-2]) / "ls").is_symlink()


def test_state_kept_on_failure_only_when_asked(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), \
            Sandbox(SandboxConfig(keep="on_failure"), tmp_path / "failed") as sb:
        sb.exec(["bash", "-c", "echo evidence > /root/agent/note"])
        raise RuntimeError("trial failed")
    assert (tmp_path / "failed" / "home" / "agent" / "note").exists()
    with Sandbox(SandboxConfig(keep="on_failure"), tmp_path / "ok") as sb:
        sb.exec(["true"])
    assert not (tmp_path / "ok").exists()


def test_a_failed_start_leaves_nothing(tmp_path: Path) -> None:
    cfg = SandboxConfig(extra_ro_binds=[("/no/such/host/path", "/x")], keep="never")
    sb = Sandbox(cfg, tmp_path / "sb")
    t = time.monotonic()
    with pytest.raises(SandboxError, match="Can't find source path /no/such/host/path"):
        sb.start()
    assert time.monotonic() - t < 2  # fails fast, not after a timeout
    assert sb.pids() == [] and sb.teardown_report is not None


def test_a_start_whose_init_died_before_it_was_pinned_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bubblewrap may fail (a bind source missing) after it forked PID 1 and told its PID, and
    PID 1 may be gone before the harness takes its namespace: the start still fails with
    bubblewrap's own words, not an OSError about /proc (seen in the parallel tier)."""
    from redline.sandbox.procview import ProcessView

    def gone(self: ProcessView, pid1: int) -> None:
        raise FileNotFoundError(f"/proc/{pid1}/ns/pid")

    monkeypatch.setattr(ProcessView, "pin", gone)
    sb = Sandbox(SandboxConfig(extra_ro_binds=[("/no/such/host/path", "/x")], keep="never"),
                 tmp_path / "sb")
    with pytest.raises(SandboxError, match="Can't find source path /no/such/host/path"):
        sb.start()
    assert sb.pids() == [] and sb.teardown_report is not None
    assert not cgroups_mod.everywhere(f"sb-{sb.id}")


def test_stale_cgroups_of_killed_harnesses_are_swept() -> None:
    base = cgroups_mod.ROOT / "pids" / "redline"
    if cgroups_mod._v2() or not base.exists():
        pytest.skip("cgroup v1 pids controller only")
    stale, fresh = base / "sb-stale-test", base / "sb-fresh-test"
    stale.mkdir(exist_ok=True)
    fresh.mkdir(exist_ok=True)
    os.utime(stale, (0, 0))
    cgroups_mod._swept = False
    try:
        cgroups_mod.sweep_stale()
        assert not stale.exists() and fresh.exists()
    finally:
        for p in (stale, fresh):
            if p.exists():
                p.rmdir()


@pytest.mark.sandbox
def test_sandbox_exec_cli() -> None:
    from redline.sandbox.cli import app

    result = CliRunner().invoke(app, ["exec", "--", "echo", "hi"])
    assert result.exit_code == 0 and "hi" in result.output
    result = CliRunner().invoke(app, ["exec", "--", "bash", "-c", "echo out; exit 3"])
    assert "out" in result.output and result.exit_code == 3
    result = CliRunner().invoke(app, ["exec", "--profile", "paper", "--", "bash", "-c",
                                      "command -v ss || echo no-ss"])
    assert "no-ss" in result.output


def test_gpu_passthrough_arguments(tmp_path: Path) -> None:
    """Only the device nodes given are bound (redline.sandbox.gpus.device_binds makes them);
    a sandbox given none has nothing of NVIDIA's."""
    for name in ("nvidia0", "nvidiactl", "nvidia-uvm"):
        (tmp_path / name).touch()
    binds = [(str(tmp_path / n), f"/dev/{n}") for n in ("nvidia0", "nvidiactl", "nvidia-uvm")]
    args = gpu_args(binds)
    assert args[:3] == ["--dev-bind", str(tmp_path / "nvidia0"), "/dev/nvidia0"]
    assert args.count("--dev-bind") == 3
    cfg_args = Sandbox(SandboxConfig(devices=binds), tmp_path / "sb").bwrap_args()
    assert "--unshare-net" in cfg_args and "--die-with-parent" in cfg_args
    assert "/dev/nvidia-uvm" in cfg_args
    plain = Sandbox(SandboxConfig(), tmp_path / "sb").bwrap_args()
    assert not any("nvidia" in a for a in plain)


def test_gpu_trials_see_their_gpus_renumbered_inside(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner pins a GPU trial with CUDA_VISIBLE_DEVICES (host ids); inside, CUDA counts
    the trial's GPUs from 0 (trial/gpuplan.py), never the host's numbers."""
    from redline.sandbox.gpus import inner_env
    from redline.trial.spec import Resources, TrialSpec, sandbox_settings, trial_env

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    gpu = TrialSpec(resources=Resources(gpus=1))
    cpu = TrialSpec()
    assert "CUDA_VISIBLE_DEVICES" not in trial_env(cpu, {})
    assert "CUDA_VISIBLE_DEVICES" not in trial_env(gpu, {})  # never the host's numbers
    # resources a trial reserves are its sandbox's limits; without them, the sandbox defaults
    assert "memory_mb" not in sandbox_settings(cpu) and "cpus" not in sandbox_settings(cpu)
    small = TrialSpec(resources=Resources(cpus=0.5, memory_mb=512))
    assert sandbox_settings(small)["memory_mb"] == 512 and sandbox_settings(small)["cpus"] == 0.5
    assert sandbox_settings(small.model_copy(update={"sandbox": SandboxConfig(memory_mb=900)}))[
        "memory_mb"] == 900
    with Sandbox(SandboxConfig(env={"PROFILE_VAR": "x"}), tmp_path / "sb") as sb:
        out = sb.exec(["sh", "-c", 'echo "$CUDA_VISIBLE_DEVICES/$CUDA_DEVICE_ORDER/$PROFILE_VAR"'],
                      env=trial_env(gpu, sb.default_env(), inner_env(2)))
    assert out.stdout.strip() == "0,1/PCI_BUS_ID/x"


def test_docker_backend_arguments(tmp_path: Path) -> None:
    """The container is made as the bubblewrap sandbox is: the machine's /usr and /etc
    read-only, init on the machine's Python as PID 1 (no docker-init), nothing of the harness's
    interpreter or environment, every capability dropped, the seccomp policy as a profile."""
    cfg = SandboxConfig(backend="docker", python_env="/opt/some-env", env={"A": "1"})
    args = docker_run_args(cfg, tmp_path, "redline-x", tmp_path / "ctl", tmp_path / "p.json",
                           "/redline/sb-x", hidden_tools=["ss"])
    joined = " ".join(args)
    for flag in ("--network none", "--rm", "--pull never", "--read-only", "--cap-drop ALL",
                 "--cgroupns private", "--cgroup-parent /redline/sb-x",
                 f"--security-opt seccomp={tmp_path / 'p.json'}",
                 "type=bind,source=/usr,target=/usr,readonly",
                 "type=bind,source=/etc,target=/etc,readonly",
                 "type=bind,source=/opt/some-env,target=/opt/venv,readonly",
                 f"type=bind,source={tmp_path / 'home'},target=/root --",
                 "target=/.usr-bin,readonly"):
        assert flag in joined + " --", flag
    assert "--init" not in args and "A=1" not in joined  # the env is given per process
    assert args[-6:-2] == [system_python(), "-I", "-S", "-c"] and args[-1] == "/run/initctl"
    assert sys.prefix not in joined and str(Path(sys.executable).parent) not in joined
    profile = seccomp.docker_profile()
    denied = {n for r in profile["syscalls"] for n in r["names"]}  # type: ignore[attr-defined]
    assert {"ptrace", "unshare", "setns", "bpf", "clone", "clone3"} <= denied
    with pytest.raises(SandboxError, match="bubblewrap"):
        docker_run_args(cfg.model_copy(update={"python_env_writable": True}), tmp_path, "x",
                        tmp_path / "ctl", tmp_path / "p.json")


def test_docker_backend_is_chosen_by_config_and_fails_cleanly(tmp_path: Path,
                                                              monkeypatch) -> None:
    sb = make_sandbox(SandboxConfig(backend="docker", keep="never"), tmp_path / "sb")
    assert isinstance(sb, DockerSandbox)
    monkeypatch.setattr(docker_mod.shutil, "which", lambda _name: None)
    with pytest.raises(SandboxError, match="docker"):
        sb.start()
    assert not (tmp_path / "sb").exists()


def test_docker_backend_without_an_engine_says_so(tmp_path: Path, monkeypatch) -> None:
    if not docker_mod.shutil.which("docker"):
        pytest.skip("no docker command")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    sb = make_sandbox(SandboxConfig(backend="docker", keep="never"), tmp_path / "sb")
    with pytest.raises(SandboxError, match="Cannot connect to the Docker daemon"):
        sb.start()
    assert not (tmp_path / "sb").exists()


def test_output_pump_survives_a_full_host_disk() -> None:
    """A log on a full disk loses its output, never the pump (CI once saw the pump thread die
    when closing a log whose buffered bytes no longer fit): the bytes are still counted and a
    pipe added afterwards is still copied."""
    import errno
    import threading

    from redline.sandbox.output import OutputPump

    class FullDisk:
        """A log file on a full disk: every write, flush and close fails with ENOSPC."""

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        flush = close = lambda self: FullDisk.write(self, b"")

    pump = OutputPump(lambda total: True)
    try:
        r, w = os.pipe()
        pump.add(r, FullDisk())  # type: ignore[arg-type]
        os.write(w, b"x" * 50000)
        os.close(w)
        r, w = os.pipe()
        pump.add(r, None)
        os.write(w, b"y" * 10)
        os.close(w)
        deadline = time.monotonic() + 5
        while pump.total < 50010 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pump.total == 50010
        assert any(t.name == "sandbox-output" and t.is_alive() for t in threading.enumerate())
    finally:
        pump.close()
