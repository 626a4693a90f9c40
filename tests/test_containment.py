"""Containment: each case tries to break out of the sandbox and must fail.

Only loopback and namespaces made here are touched; no outside address is ever tried.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from helpers import assert_nothing_reaches_another_or_the_kernel, sh, sweep_dead_harnesses

from redline.sandbox import Sandbox, SandboxConfig, SandboxError
from redline.sandbox import cgroups as cgroups_mod
from redline.system.launcher import pid_alive

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def sandbox(tmp_path: Path):
    with Sandbox(SandboxConfig(memory_mb=256, pids_max=64, keep="never"), tmp_path / "sb") as sb:
        yield sb



def daemons(sb: Sandbox, argv: list[str], wait_s: float = 3.0) -> list[int]:
    """Host PIDs running `argv` inside (a just-forked daemon may not have exec'd yet)."""
    deadline = time.monotonic() + wait_s
    while True:
        found = [p.host_pid for p in sb.processes() if p.cmdline == argv]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.01)


def test_only_loopback_and_no_route_to_a_host_loopback_server(sandbox: Sandbox) -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    port = server.server_port
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        links = sh(sandbox, "ip -o link show | awk -F': ' '{print $2}'").stdout.split()
        assert links == ["lo"]
        net = sh(sandbox, "ls /sys/class/net 2>/dev/null || echo absent").stdout.split()
        assert net in (["lo"], ["absent"])
        r = sh(sandbox, f"curl -s -m 3 http://127.0.0.1:{port}/ >/dev/null; echo rc=$?")
        assert "rc=7" in r.stdout  # connection refused: nothing listens in the sandbox's lo
        # and the host can reach its own server, so the test itself is sound
        import httpx

        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=3).status_code == 200
    finally:
        server.shutdown()


def test_cannot_see_host_processes(sandbox: Sandbox) -> None:
    host = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        r = sh(sandbox, "ps -eo pid=,args=")
        assert "sleep 60" not in r.stdout
        assert len(r.stdout.strip().splitlines()) <= 6  # bwrap, init, bash, ps
        assert str(host.pid) not in sh(sandbox, "ls /proc").stdout.split()
    finally:
        os.killpg(host.pid, signal.SIGKILL)
        host.wait()


def test_cannot_read_or_write_checkout_or_host_home(sandbox: Sandbox) -> None:
    tag = uuid.uuid4().hex
    secret = Path("/root") / f"redline-secret-{tag}"
    secret.write_text("host secret")
    try:
        r = sh(sandbox, f"cat {secret} 2>&1; ls {ROOT} 2>&1; cat {ROOT}/README.md 2>&1; "
                        f"cat {ROOT}/pyproject.toml 2>&1; touch {ROOT}/escape 2>&1; "
                        f"touch {ROOT}/.venv/escape 2>&1; touch /usr/escape 2>&1; "
                        f"echo x > /root/escape-{tag}; ls /root; echo done")
        assert "host secret" not in r.stdout and "[project]" not in r.stdout
        assert f"redline-secret-{tag}" not in sh(sandbox, "ls -a /root").stdout  # nor listed
        assert not (ROOT / "escape").exists() and not (ROOT / ".venv" / "escape").exists()
        assert not Path("/usr/escape").exists()
        assert not Path(f"/root/escape-{tag}").exists()  # /root inside is the trial's home
        assert sandbox.host_path(f"/root/escape-{tag}").read_text() == "x\n"
        assert "Read-only file system" in r.stdout or "No such file" in r.stdout
        assert r.stdout.strip().endswith("done")
    finally:
        secret.unlink()


def test_cannot_see_another_trial(tmp_path: Path) -> None:
    with Sandbox(SandboxConfig(keep="never"), tmp_path / "a") as a, \
            Sandbox(SandboxConfig(keep="never"), tmp_path / "b") as b:
        sh(a, "echo mine > /root/agent/a.txt; echo t > /tmp/a.txt")
        a.spawn(["sleep", "77"])
        r = sh(b, f"ls /root/agent /tmp; cat {tmp_path}/a/home/agent/a.txt 2>/dev/null; "
                  f"find /root /tmp /run /var /work -name a.txt 2>/dev/null; ps -eo args=")
        assert "a.txt" not in r.stdout and "mine" not in r.stdout and "sleep 77" not in r.stdout


def test_memory_hog_is_killed_by_the_memory_limit(tmp_path: Path) -> None:
    with Sandbox(SandboxConfig(memory_mb=256, keep="never"), tmp_path / "sb") as sb:
        r = sb.exec(["python3", "-c", "x = bytearray(1024 ** 3); print('got it')"],
                    timeout=60)
        assert r.returncode != 0 and "got it" not in r.stdout
        report = sb.teardown()
    assert r.returncode == -signal.SIGKILL  # the kernel's OOM killer, not a MemoryError
    assert "oom_kill 1" in report["cgroup_events"].get("memory.oom_control", "oom_kill 1")


def test_daemon_does_not_outlive_the_trial(tmp_path: Path) -> None:
    sb = Sandbox(SandboxConfig(keep="never"), tmp_path / "sb")
    sb.start()
    sh(sb, "setsid nohup sleep 1000 >/dev/null 2>&1 & disown; echo ok")
    found = daemons(sb, ["sleep", "1000"])
    assert len(found) == 1
    report = sb.teardown()
    assert report["leftover"] == 0 and sb.pids() == []
    assert not Path(f"/proc/{found[0]}").exists()


HARNESS = """
import sys, time, json
from pathlib import Path
from redline.sandbox import Sandbox, SandboxConfig
sb = Sandbox(SandboxConfig(keep="never"), Path(sys.argv[1]))
sb.start()
sb.exec(["bash", "-c", "setsid nohup sleep 1000 >/dev/null 2>&1 &"])
for _ in range(300):
    pids = [p.host_pid for p in sb.processes() if p.cmdline[:2] == ["sleep", "1000"]]
    if pids:
        break
    time.sleep(0.01)
print(json.dumps({"daemons": pids, "all": sb.pids(), "id": sb.id}), flush=True)
time.sleep(600)
"""


def _alive(pids: list[int]) -> list[int]:
    """Those still running (a zombie has exited: the host's init reaps it later)."""
    return [pid for pid in pids if pid_alive(pid)]


def test_nothing_outlives_a_sigkilled_harness(tmp_path: Path) -> None:
    harness = subprocess.Popen([sys.executable, "-c", HARNESS, str(tmp_path / "sb")],
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    info = json.loads(harness.stdout.readline())
    assert info["daemons"] and all(Path(f"/proc/{p}").exists() for p in info["all"])
    os.kill(harness.pid, signal.SIGKILL)
    harness.wait()
    deadline = time.monotonic() + 10  # a loaded machine (the parallel tier) is slow to reap
    while time.monotonic() < deadline and _alive(info["all"]):
        time.sleep(0.05)
    assert not _alive(info["all"])
    sweep_dead_harnesses()  # its cgroup and store: finished by the next harness's start
    assert not cgroups_mod.everywhere(f"sb-{info['id']}")


def test_cannot_kill_a_process_outside(sandbox: Sandbox) -> None:
    host = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        r = sh(sandbox, f"kill -9 {host.pid} 2>&1; echo rc=$?")
        assert "rc=0" not in r.stdout
        assert sandbox.kill([host.pid]) == []  # the harness API refuses too
        time.sleep(0.2)
        assert host.poll() is None
    finally:
        os.killpg(host.pid, signal.SIGKILL)
        host.wait()


def test_unapplicable_limit_is_reported_loudly(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setattr(cgroups_mod, "ROOT", tmp_path / "no-cgroups-here" / "x")
    (tmp_path / "no-cgroups-here").mkdir()
    (tmp_path / "no-cgroups-here" / "x").write_text("a file, so mkdir below it fails")
    with caplog.at_level("WARNING"), \
            Sandbox(SandboxConfig(keep="never"), tmp_path / "sb") as sb:
        rep = sb.limits_report
    assert rep["memory"]["applied"] is False and "cannot create" in rep["memory"]["reason"]
    assert "NOT applied" in caplog.text


def test_paper_profile_hides_netstat_lsof_ss(tmp_path: Path) -> None:
    probe = "for t in netstat lsof ss ps; do command -v $t >/dev/null && echo has-$t; done"
    with Sandbox(SandboxConfig(profile="paper", keep="never"), tmp_path / "a") as sb:
        assert sh(sb, probe).stdout.split() == ["has-ps"]
    with Sandbox(SandboxConfig(keep="never"), tmp_path / "b") as sb:
        assert "has-ss" in sh(sb, probe).stdout.split()


def _until_empty(sb: Sandbox, limit_s: float) -> float:
    t = time.monotonic()
    while sb.pids() and time.monotonic() - t < limit_s:
        time.sleep(0.05)
    return time.monotonic() - t


def test_wall_clock_and_disk_limits_kill_the_sandbox(tmp_path: Path) -> None:
    sb = Sandbox(SandboxConfig(wall_clock_s=1.0, keep="never"), tmp_path / "a")
    sb.start()
    sb.spawn(["sleep", "100"])
    assert 0.5 < _until_empty(sb, 4) < 3.5
    assert sb.pids() == [] and "wall-clock" in sb.teardown()["killed_by_limit"]
    sb = Sandbox(SandboxConfig(disk_mb=5, keep="never"), tmp_path / "b")
    sb.start()
    sb.spawn(["bash", "-c", "head -c 20000000 /dev/zero > /tmp/fill; sleep 100"])
    _until_empty(sb, 4)
    assert sb.pids() == [] and "disk" in sb.teardown()["killed_by_limit"]


def test_harness_sees_listeners_and_reaches_them_through_the_netns(sandbox: Sandbox) -> None:
    pid = sandbox.spawn(["python3", "-m", "http.server", "9123", "--bind", "127.0.0.1"])
    import httpx

    for _ in range(100):
        ports = {lst.port: lst.host_pid for lst in sandbox.listening_ports()}
        if 9123 in ports:
            break
        time.sleep(0.05)
    assert ports[9123] == pid
    status = sandbox.netns_call(lambda: httpx.get("http://127.0.0.1:9123/").status_code)
    assert status == 200
    info = next(p for p in sandbox.processes() if p.host_pid == pid)
    assert info.cwd == "/root/agent" and info.ns_pid and info.ns_pid < 100


def test_unprivileged_network_access_uses_sockets_made_inside(tmp_path: Path) -> None:
    """Without root, setns into the sandbox's network is refused; the harness then takes its
    sockets from init inside (forced here, as CI runs as root). The sandbox's server is
    reached, the host's loopback server is not, and other threads keep the host's network."""
    import httpx

    host = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=host.serve_forever, daemon=True).start()
    try:
        with Sandbox(SandboxConfig(net_access="init-sockets"), tmp_path / "sb") as sb:
            sb.spawn(["python3", "-m", "http.server", "9124", "--bind", "127.0.0.1"])
            for _ in range(200):
                if any(lst.port == 9124 for lst in sb.listening_ports()):
                    break
                time.sleep(0.05)

            def get(port: int) -> int | str:
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/", timeout=3).status_code
                except httpx.HTTPError as exc:
                    return type(exc).__name__

            assert sb.netns_call(get, 9124) == 200 and sb.net_mode == "init-sockets"
            assert sb.netns_call(get, host.server_port) == "ConnectError"
            assert get(host.server_port) == 200 and get(9124) == "ConnectError"
    finally:
        host.shutdown()


def test_state_is_kept_for_forensics_or_deleted(tmp_path: Path) -> None:
    with Sandbox(SandboxConfig(keep="always"), tmp_path / "kept") as sb:
        sh(sb, "echo evidence > /root/agent/note.txt")
    assert (tmp_path / "kept" / "home" / "agent" / "note.txt").read_text() == "evidence\n"
    with Sandbox(SandboxConfig(keep="never"), tmp_path / "gone") as sb:
        sh(sb, "echo x > /root/agent/note.txt")
    assert not (tmp_path / "gone").exists()


def test_root_inside_has_no_privileges_to_escape(tmp_path: Path) -> None:
    """mknod of the host's disk, mounting (e.g. cgroupfs for release_agent), loading modules:
    all need capabilities that the sandbox drops."""
    with Sandbox(SandboxConfig(keep="never"), tmp_path / "sb") as sb:
        r = sb.exec(["bash", "-c",
                     "grep CapEff /proc/self/status; "
                     "mknod /tmp/disk b 8 0 2>&1; echo mknod=$?; "
                     "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m 2>&1; echo mount=$?; "
                     "mount -t cgroup -o memory none /tmp/m 2>&1; echo cgroup=$?"])
    caps = int(r.stdout.split()[1], 16)
    assert caps == 1 << 10  # CAP_NET_BIND_SERVICE only
    for op in ("mknod", "mount", "cgroup"):
        assert f"{op}=0" not in r.stdout, r.stdout


# ----- the sandbox's own processes and the kernel are off limits (containment v2) ----------
# Each case runs in both ways the harness reaches inside: setns (root) and sockets made by
# init (the unprivileged mode, forced here), since the second hands init's sockets to the judge.

@pytest.fixture(params=["auto", "init-sockets"])
def guarded(request: pytest.FixtureRequest, tmp_path: Path):
    cfg = SandboxConfig(memory_mb=256, pids_max=64, keep="never", net_access=request.param)
    with Sandbox(cfg, tmp_path / "sb") as sb:
        sb.netns_call(lambda: None)  # the harness's network channel is up, as in a trial
        yield sb


def test_no_process_inside_can_ptrace_or_read_another_or_reach_the_kernel(guarded: Sandbox
                                                                           ) -> None:
    assert_nothing_reaches_another_or_the_kernel(guarded)


def test_init_is_off_limits_through_proc(guarded: Sandbox) -> None:
    """PID 1 (the harness's init) is not dumpable: its descriptors, memory, root, cwd and
    environment cannot be opened, so neither its control socket nor a host file it holds can
    be reached, and nothing can be written through its stderr."""
    r = sh(guarded, "for f in /proc/1/fd/0 /proc/1/fd/1 /proc/1/fd/2 /proc/1/environ "
                    "/proc/1/mem /proc/1/maps /proc/1/exe; do "
                    "if head -c1 $f >/dev/null 2>&1; then echo open $f; else echo denied $f; "
                    "fi; done; for d in /proc/1/root/ /proc/1/cwd/; do "
                    "if ls $d >/dev/null 2>&1; then echo open $d; else echo denied $d; fi; "
                    "done; "
                    "echo x >> /proc/1/fd/2 && echo wrote; "
                    "ls -l /proc/1/fd/ 2>&1 | grep -c -- '->'; true")
    lines = r.stdout.splitlines()
    assert [x.split()[0] for x in lines[:9]] == ["denied"] * 9, r.stdout
    assert "wrote" not in r.stdout
    assert lines[-1] == "0"  # no link target (socket, pipe, host file) shown
    ps = sh(guarded, "ps -o pid=,args= -p 1; cat /proc/1/comm").stdout.split()
    assert ps == ["1", "/sbin/init", "init"]


@pytest.mark.parametrize("sig", ["KILL", "TERM", "INT", "HUP", "QUIT", "USR1", "SEGV"])
def test_signals_from_inside_do_not_end_init(guarded: Sandbox, sig: str) -> None:
    r = sh(guarded, f"kill -{sig} 1; echo rc=$?; sleep 0.2")
    assert "rc=0" in r.stdout  # delivered, and dropped: PID 1 has no handler for it
    assert guarded.lost() is None and sh(guarded, "echo still here").stdout == "still here\n"


def test_kernel_settings_and_sysfs_are_read_only(guarded: Sandbox) -> None:
    """Opening for writing is the whole check: nothing is ever written to a host setting."""
    r = sh(guarded, "for f in /proc/sys/kernel/core_pattern /proc/sys/vm/swappiness "
                    "/proc/sys/kernel/modprobe /proc/sysrq-trigger "
                    "/sys/devices/system/cpu/cpu0/online /sys/kernel/uevent_helper; do "
                    "if [ -e $f ] && (exec 3>>$f) 2>/dev/null; then echo writable $f; fi; "
                    "done; touch /sys/devices/system/cpu/x 2>/dev/null && echo sys-writable; "
                    "cat /proc/sys/kernel/ostype")
    assert r.stdout.splitlines() == ["Linux"], r.stdout  # readable, as on any machine


def test_no_mount_through_a_nested_user_namespace(guarded: Sandbox) -> None:
    r = sh(guarded, "unshare -Urm sh -c 'mount -t tmpfs none /mnt && echo mounted' 2>&1; "
                    "unshare -m true 2>&1 && echo unshared; "
                    "python3 -c 'import os; os.unshare(os.CLONE_NEWUSER)' 2>&1 | tail -1")
    assert "mounted" not in r.stdout and "unshared" not in r.stdout
    assert "Operation not permitted" in r.stdout


@pytest.mark.parametrize("net_access", ["auto", "init-sockets"])
def test_output_of_processes_inside_counts_against_the_disk_limit(tmp_path: Path,
                                                                  net_access: str) -> None:
    """A process whose stdout is a log on the host cannot write past the disk limit through
    it: every byte copied out is counted, and the sandbox dies at the limit."""
    log = tmp_path / "out.log"
    sb = Sandbox(SandboxConfig(disk_mb=5, keep="never", net_access=net_access),
                 tmp_path / "sb")
    sb.start()
    try:
        try:
            sb.spawn(["bash", "-c", "head -c 300000000 /dev/zero; sleep 100"], stdout_path=log)
        except SandboxError as exc:  # it hit the limit before spawn could say it started
            assert "killed by disk limit of 5 MiB" in str(exc)
        _until_empty(sb, 10)
        assert sb.pids() == []
    finally:
        report = sb.teardown()
    assert report["killed_by_limit"] == "disk limit of 5 MiB"
    assert log.stat().st_size <= 5 * 1024 * 1024
    assert 5 * 1024 * 1024 < report["disk_bytes"] < 300_000_000
