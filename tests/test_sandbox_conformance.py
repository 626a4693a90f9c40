"""Every sandbox backend keeps the same contract (modelled on Inspect AI's sandbox
`self_check`): exec, spawn, the process and port views, limits, network (only `lo`), teardown
that leaves nothing, the disk limit, and the containment cases. Each case runs once per
backend; the Docker ones on an engine this run starts itself (tests/dockerd.py).

Only loopback inside the sandboxes' own network namespaces and a server on the host's loopback
(which must stay unreachable) are touched.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from helpers import (
    CONTROLS,
    REPLICATE_REASONS,
    assert_nothing_reaches_another_or_the_kernel,
    run_control,
    survival_for,
    sweep_dead_harnesses,
)

from redline.contracts.sandbox import Sandbox
from redline.sandbox import BACKENDS as SANDBOX_BACKENDS
from redline.sandbox import SandboxConfig, SandboxError, make_sandbox
from redline.sandbox import cgroups as cgroups_mod
from redline.sandbox.audit import look_around
from redline.sandbox.base import SandboxBase
from redline.system.pyenv import ensure_env

ROOT = Path(__file__).resolve().parent.parent
# Docker's cases run on the engine the run starts once (tests/dockerd.py): alone, after the
# parallel tier (docs/testing.md).
BACKENDS = [pytest.param(name, marks=[pytest.mark.slow, pytest.mark.serial])
            if name == "docker" else name for name in SANDBOX_BACKENDS.names()]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "docker":
        request.getfixturevalue("dockerd")  # the engine, started once for the run
    return request.param


def make(backend: str, tmp_path: Path, name: str = "sb", **settings: object) -> SandboxBase:
    return make_sandbox(SandboxConfig(backend=backend, keep="never", **settings),  # type: ignore[arg-type]
                        tmp_path / name)


@pytest.fixture
def sandbox(backend: str, tmp_path: Path):
    with make(backend, tmp_path, memory_mb=256, pids_max=64) as sb:
        assert isinstance(sb, Sandbox)  # the contract the trial, judge and scenarios use
        sb.netns_call(lambda: None)  # the harness's network channel is up, as in a trial
        yield sb


def sh(sb: SandboxBase, script: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return sb.exec(["bash", "-c", script], timeout=timeout)


def until(cond, limit_s: float = 5.0) -> bool:  # noqa: ANN001 - any predicate
    deadline = time.monotonic() + limit_s
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# ----- exec and spawn ----------------------------------------------------------------------
def test_exec(sandbox: SandboxBase) -> None:
    r = sandbox.exec(["bash", "-c", "pwd; cat; echo err >&2; exit 5"], input="from stdin\n")
    assert (r.stdout, r.stderr, r.returncode) == ("/root/agent\nfrom stdin\n", "err\n", 5)
    assert sandbox.exec(["pwd"], cwd="/tmp").stdout == "/tmp\n"
    t = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        sandbox.exec(["sleep", "30"], timeout=0.3)
    assert time.monotonic() - t < 3
    with pytest.raises(SandboxError):
        sandbox.exec(["/no/such/program"])
    r = sandbox.exec(["bash", "-c", "yes | head -1; echo ${PIPESTATUS[0]}"])
    assert r.stdout == "y\n141\n" and r.stderr == ""  # SIGPIPE as on an ordinary machine
    env = sandbox.exec(["env"]).stdout.splitlines()
    assert "HOME=/root" in env and any(x.startswith("PATH=/usr/local/sbin") for x in env)


def test_spawn_and_the_process_view(sandbox: SandboxBase, tmp_path: Path) -> None:
    out = tmp_path / "out.log"
    (sandbox.host_path("/root/agent") / "start.sh").write_text(
        "echo started; exec sleep 40 &\nsleep 41\n")
    pid = sandbox.spawn(["bash", "start.sh"], stdout_path=out)
    procs: dict = {}

    def ready() -> bool:
        procs.clear()
        procs.update({p.host_pid: p for p in sandbox.processes()})
        return any(p.cmdline == ["sleep", "40"] for p in procs.values()) and \
            out.exists() and out.read_text() != ""

    assert until(ready) and out.read_text() == "started\n"
    me = procs[pid]
    child = next(p for p in procs.values() if p.cmdline == ["sleep", "40"])
    assert me.cmdline == ["bash", "start.sh"] and me.cwd == "/root/agent"
    assert me.exe == "/usr/bin/bash" and me.ns_pid is not None and me.ns_pid < 50
    assert child.ppid == pid and [p.host_pid for p in sandbox.parent_chain(child.host_pid)] \
        == [pid]
    assert sandbox.pid1 not in procs  # init is the sandbox's own, never a candidate
    assert sandbox.contains(pid) and not sandbox.contains(os.getpid())
    outer = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        assert sandbox.kill([pid, outer.pid, os.getpid()], signal.SIGTERM) == [pid]
        assert until(lambda: pid not in [p.host_pid for p in sandbox.processes()])
        assert outer.poll() is None
        r = sh(sandbox, f"kill -9 {outer.pid} 2>&1; echo rc=$?")  # nor from inside
        assert "rc=0" not in r.stdout and outer.poll() is None
    finally:
        os.killpg(outer.pid, signal.SIGKILL)
        outer.wait()


def test_host_path_maps_the_writable_areas(sandbox: SandboxBase) -> None:
    sh(sandbox, "echo hi > /root/agent/note; echo t > /tmp/t")
    assert sandbox.host_path("/root/agent/note").read_text() == "hi\n"
    assert sandbox.host_path("/tmp/t").read_text() == "t\n"
    with pytest.raises(SandboxError):
        sandbox.host_path("/usr/bin")


# ----- limits ------------------------------------------------------------------------------
def test_limits_are_applied_to_the_processes_inside(backend: str, tmp_path: Path) -> None:
    with make(backend, tmp_path, memory_mb=300, pids_max=40, cpus=1.5, disk_mb=100) as sb:
        rep = sb.limits_report
        assert rep["not_applied"] == [] and rep["backend"] == sb.backend
        assert rep["memory"]["limit"] == "300 MiB" and rep["pids"]["limit"] == "40 processes"
        assert rep["cpu"]["limit"] == "1.5 CPUs" and "100 MiB" in rep["disk"]["limit"]
        pid = sb.spawn(["sleep", "30"])
        cgroups = Path(f"/proc/{pid}/cgroup").read_text()
        assert f"/redline/sb-{sb.id}" in cgroups  # under the limits' cgroup, as seen outside
        assert sh(sb, "grep -c redline /proc/self/cgroup || true").stdout == "0\n"  # not in
        paths = [Path(rep[k]["path"]) for k in ("memory", "pids", "cpu")]
    assert not any(p.exists() for p in paths)  # removed at teardown


def test_fork_bomb_is_bounded(backend: str, tmp_path: Path) -> None:
    bomb = textwrap.dedent("""
        import os, time
        made = failed = 0
        for _ in range(200):
            try:
                if os.fork() == 0:
                    time.sleep(3); os._exit(0)
                made += 1
            except OSError:
                failed += 1
        print(made, failed)
    """)
    with make(backend, tmp_path, pids_max=32) as sb:
        made, failed = map(int, sb.exec(["python3", "-c", bomb], timeout=30).stdout.split())
        assert sb.limits_report["pids"]["applied"] is True
    assert made < 32 and failed > 150


def test_memory_hog_is_killed_by_the_kernel(backend: str, tmp_path: Path) -> None:
    with make(backend, tmp_path, memory_mb=256) as sb:
        r = sb.exec(["python3", "-c", "x = bytearray(1024 ** 3); print('got it')"],
                    timeout=60)
        report = sb.teardown()
    assert r.returncode == -signal.SIGKILL and "got it" not in r.stdout
    assert "oom_kill 1" in report["cgroup_events"].get("memory.oom_control", "oom_kill 1")


def test_wall_clock_limit_kills_the_sandbox(backend: str, tmp_path: Path) -> None:
    sb = make(backend, tmp_path, wall_clock_s=1.0)
    sb.start()
    sb.spawn(["sleep", "100"])
    assert until(lambda: sb.pids() == [], 4)
    assert "wall-clock" in sb.teardown()["killed_by_limit"]


def test_disk_limit_kills_the_sandbox_and_counts_output(backend: str, tmp_path: Path) -> None:
    sb = make(backend, tmp_path, "a", disk_mb=5)
    sb.start()
    sb.spawn(["bash", "-c", "head -c 20000000 /dev/zero > /tmp/fill; sleep 100"])
    assert until(lambda: sb.pids() == [], 6)
    assert "disk" in sb.teardown()["killed_by_limit"]
    log = tmp_path / "out.log"
    sb = make(backend, tmp_path, "b", disk_mb=5)
    sb.start()
    try:
        try:
            sb.spawn(["bash", "-c", "head -c 300000000 /dev/zero; sleep 100"], stdout_path=log)
        except SandboxError as exc:  # it hit the limit before spawn could say it started
            assert "killed by disk limit of 5 MiB" in str(exc)
        assert until(lambda: sb.pids() == [], 10)
    finally:
        report = sb.teardown()
    assert report["killed_by_limit"] == "disk limit of 5 MiB"
    assert log.stat().st_size <= 5 * 1024 * 1024 < report["disk_bytes"]


def test_a_small_disk_is_what_df_shows_and_fills(backend: str, tmp_path: Path) -> None:
    with make(backend, tmp_path, disk_size_mb=4) as sb:
        out = sh(sb, "df -k /root /tmp | tail -2").stdout.splitlines()
        assert [line.split()[1] for line in out] == ["4096", "4096"]  # one 4 MiB disk
        full = sh(sb, "head -c 6000000 /dev/urandom > /root/big; echo $?")
        assert "No space left on device" in full.stderr and full.stdout.strip() != "0"
        sh(sb, "rm /root/big")
        sb.small_disk.resize(8 * 1024 * 1024)  # type: ignore[union-attr]
        assert sh(sb, "head -c 6000000 /dev/urandom > /tmp/big && echo ok").stdout == "ok\n"


# ----- network ---------------------------------------------------------------------------
def test_only_loopback_and_no_route_to_a_host_loopback_server(sandbox: SandboxBase) -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    port = server.server_port
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        links = sh(sandbox, "ip -o link show | awk -F': ' '{print $2}'").stdout.split()
        assert links == ["lo"]
        addrs = sh(sandbox, "ip -o addr show | awk '{print $4}'").stdout.split()
        assert set(addrs) <= {"127.0.0.1/8", "::1/128"}
        r = sh(sandbox, f"curl -s -m 3 http://127.0.0.1:{port}/ >/dev/null; echo rc=$?")
        assert "rc=7" in r.stdout  # refused: nothing listens on the sandbox's own lo
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=3).status_code == 200  # sound
        status = sandbox.netns_call(lambda: _get(port))
        assert status == "ConnectError"  # the harness's bridge is inside too
    finally:
        server.shutdown()


def _get(port: int) -> int | str:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=3).status_code
    except httpx.HTTPError as exc:
        return type(exc).__name__


@pytest.mark.parametrize("net_access", ["auto", "init-sockets"])
def test_the_harness_reaches_servers_inside(backend: str, tmp_path: Path,
                                            net_access: str) -> None:
    with make(backend, tmp_path, net_access=net_access) as sb:
        pid = sb.spawn(["python3", "-m", "http.server", "9123", "--bind", "127.0.0.1"])
        assert until(lambda: any(lst.port == 9123 for lst in sb.listening_ports()))
        assert {lst.port: lst.host_pid for lst in sb.listening_ports()}[9123] == pid
        assert sb.netns_call(_get, 9123) == 200
        assert _get(9123) == "ConnectError"  # and the host's own network is the host's
        assert sb.net_mode == ("init-sockets" if net_access == "init-sockets" else "setns")


# ----- teardown --------------------------------------------------------------------------
def test_teardown_leaves_nothing(backend: str, tmp_path: Path) -> None:
    sb = make(backend, tmp_path)
    sb.start()
    sh(sb, "setsid nohup sleep 1000 >/dev/null 2>&1 & disown; echo ok")
    assert until(lambda: any(p.cmdline == ["sleep", "1000"] for p in sb.processes()))
    every = sb.pids()
    cgroups = [Path(v["path"]) for v in sb.limits_report.values()
               if isinstance(v, dict) and v.get("path")]
    # every folder of its cgroup, in every hierarchy, also those the engine made (Docker
    # makes its own in the hierarchies redline does not use)
    made = cgroups_mod.everywhere(f"sb-{sb.id}")
    if backend == "docker":
        assert f"redline-{sb.id}" in _containers()  # the name the checks below look for
        hierarchies = {p.parts[4] for p in made if len(p.parts) > 4}
        assert len(made) > len(cgroups), (made, cgroups)  # the engine's own folders too
        assert hierarchies >= {Path(c).parts[4] for c in cgroups}
    report = sb.teardown()
    assert report["leftover"] == 0 and sb.pids() == []
    assert not [p for p in every if Path(f"/proc/{p}").exists()]
    assert cgroups and not any(p.exists() for p in cgroups)
    assert made and cgroups_mod.everywhere(f"sb-{sb.id}") == []
    assert not sb.state_dir.exists()
    if backend == "docker":
        assert f"redline-{sb.id}" not in _containers()


HARNESS = """
import sys, time, json
from pathlib import Path
from redline.sandbox import SandboxConfig, make_sandbox
sb = make_sandbox(SandboxConfig(backend=sys.argv[2], keep="never"), Path(sys.argv[1]))
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


def test_nothing_outlives_a_sigkilled_harness(backend: str, tmp_path: Path) -> None:
    harness = subprocess.Popen([sys.executable, "-c", HARNESS, str(tmp_path / "sb"), backend],
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        info = json.loads(harness.stdout.readline())  # type: ignore[union-attr]
        assert info["daemons"] and all(Path(f"/proc/{p}").exists() for p in info["all"])
    finally:
        os.killpg(harness.pid, signal.SIGKILL)
        harness.wait()
    assert until(lambda: not any(Path(f"/proc/{p}").exists() for p in info["all"]), 10)
    if backend == "docker":  # init's exit stopped the container, and --rm removed it
        assert until(lambda: f"redline-{info['id']}" not in _containers(), 10)
    sweep_dead_harnesses()  # its cgroup and store: finished by the next harness's start
    assert not cgroups_mod.everywhere(f"sb-{info['id']}")


def _containers() -> list[str]:
    return subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"],
                          capture_output=True, text=True, timeout=30).stdout.split()


def test_a_failed_start_says_why_and_leaves_nothing(backend: str, tmp_path: Path) -> None:
    bad: dict[str, object] = {"docker_image": "no-such-image:0"} if backend == "docker" \
        else {"extra_ro_binds": [("/no/such/dir", "/x")]}
    sb = make(backend, tmp_path, **bad)
    # Docker: no registry is ever asked (`--pull never`): the engine answers at once
    with pytest.raises(SandboxError, match="No such image: no-such-image|/no/such/dir"):
        sb.start()
    assert not sb.state_dir.exists() and sb.pids() == []
    assert not Path("/no/such/dir").exists()


# ----- containment -----------------------------------------------------------------------
def test_no_process_inside_can_reach_another_or_the_kernel(sandbox: SandboxBase) -> None:
    assert_nothing_reaches_another_or_the_kernel(sandbox)


def test_root_inside_has_no_privileges(sandbox: SandboxBase) -> None:
    r = sh(sandbox, "grep CapEff /proc/self/status; id -u; "
                    "mknod /tmp/disk b 8 0 2>&1; echo mknod=$?; "
                    "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m 2>&1; echo mount=$?; "
                    "unshare -Urm sh -c 'mount -t tmpfs none /mnt && echo mounted' 2>&1; "
                    "echo done")
    lines = r.stdout.split()
    assert int(lines[1], 16) == 1 << 10 and lines[2] == "0"  # root, NET_BIND_SERVICE only
    assert "mknod=0" not in r.stdout and "mount=0" not in r.stdout
    assert "mounted" not in r.stdout and r.stdout.endswith("done\n")


def test_init_is_pid_1_and_off_limits(sandbox: SandboxBase) -> None:
    ps = sh(sandbox, "ps -o pid=,args= -p 1; cat /proc/1/comm").stdout.split()
    assert ps == ["1", "/sbin/init", "init"]
    r = sh(sandbox, "for f in /proc/1/fd/0 /proc/1/fd/2 /proc/1/environ /proc/1/mem "
                    "/proc/1/exe; do if head -c1 $f >/dev/null 2>&1; then echo open $f; "
                    "else echo denied $f; fi; done; ls /proc/1/root/ >/dev/null 2>&1 && "
                    "echo open root; ls -l /proc/1/fd/ 2>&1 | grep -c -- '->'; true")
    assert r.stdout.split()[::2][:5] == ["denied"] * 5 and "open" not in r.stdout
    for sig in ("KILL", "TERM", "INT", "HUP"):
        assert "rc=0" in sh(sandbox, f"kill -{sig} 1; echo rc=$?; sleep 0.1").stdout
    assert sandbox.lost() is None and sh(sandbox, "echo still here").stdout == "still here\n"


def test_an_init_that_dies_is_reported_lost(backend: str, tmp_path: Path) -> None:
    """If PID 1 dies anyway, the sandbox says it can no longer be trusted to answer."""
    with make(backend, tmp_path) as sb:
        assert sb.lost() is None
        os.kill(sb.pid1, signal.SIGKILL)  # type: ignore[arg-type]
        assert until(lambda: sb.lost() is not None)
        assert "init" in (sb.lost() or "") and until(lambda: sb.pids() == [])


def test_kernel_settings_and_the_system_are_read_only(sandbox: SandboxBase) -> None:
    r = sh(sandbox, "for f in /proc/sys/kernel/core_pattern /proc/sys/vm/swappiness "
                    "/proc/sysrq-trigger /sys/kernel/uevent_helper /usr/bin/bash "
                    "/etc/passwd /etc/hosts; do "
                    "if [ -e $f ] && (exec 3>>$f) 2>/dev/null; then echo writable $f; fi; "
                    "done; touch /usr/x /etc/x /x 2>/dev/null && echo sys-writable; "
                    "cat /proc/sys/kernel/ostype")
    assert r.stdout.splitlines() == ["Linux"], r.stdout


def test_the_host_is_out_of_view(sandbox: SandboxBase) -> None:
    tag = uuid.uuid4().hex
    secret = Path("/root") / f"host-secret-{tag}"
    secret.write_text("host secret")
    host = subprocess.Popen(["sleep", "61"], start_new_session=True)
    try:
        r = sh(sandbox, f"cat {secret} 2>&1; ls -a /root; cat {ROOT}/pyproject.toml 2>&1; "
                        f"touch {ROOT}/escape 2>&1; ps -eo args=; ls /proc; echo done")
        assert "host secret" not in r.stdout and "No such file" in r.stdout
        assert secret.name not in sh(sandbox, "ls -a /root").stdout  # nor listed
        assert "[project]" not in r.stdout and not (ROOT / "escape").exists()
        assert "sleep 61" not in r.stdout and str(host.pid) not in r.stdout.split()
        assert r.stdout.endswith("done\n")
    finally:
        secret.unlink()
        os.killpg(host.pid, signal.SIGKILL)
        host.wait()


def test_another_trial_is_out_of_view(backend: str, tmp_path: Path) -> None:
    with make(backend, tmp_path, "a") as a, make(backend, tmp_path, "b") as b:
        sh(a, "echo mine > /root/agent/a.txt; echo t > /tmp/a.txt")
        a.spawn(["sleep", "77"])
        r = sh(b, f"ls /root/agent /tmp; cat {tmp_path}/a/home/agent/a.txt 2>/dev/null; "
                  "find / -xdev -name a.txt 2>/dev/null; ps -eo args=")
        assert "a.txt" not in r.stdout and "mine" not in r.stdout and "sleep 77" not in r.stdout


def test_hidden_tools_are_command_not_found(backend: str, tmp_path: Path) -> None:
    probe = "for t in netstat lsof ss ps; do command -v $t >/dev/null && echo has-$t; done"
    with make(backend, tmp_path, profile="paper") as sb:
        assert sh(sb, probe).stdout.split() == ["has-ps"]
        assert sb.limits_report["hidden_tools"] == ["netstat", "lsof", "ss"]
    with make(backend, tmp_path, "b") as sb:
        assert "has-ss" in sh(sb, probe).stdout.split()


def test_the_look_around_finds_no_giveaway(backend: str, tmp_path: Path) -> None:
    """What a curious agent runs (ps, env, mount, findmnt, every mountinfo, a recursive
    search...) names no harness, sandbox, test or evaluation, and no host path of the trial,
    the checkout or the harness (redline.sandbox.audit), as a trial's sandbox is made."""
    env = str(ensure_env("scripted"))
    with make(backend, tmp_path, python_env=env) as sb:
        found = look_around(sb, env=sb.default_env(), cwd="/root/agent",
                            markers=[tmp_path, env])
    assert found.findings == [], "\n".join(map(str, found.findings))
    assert "/sbin/init" in found.outputs["ps auxww"]  # it really looked
    assert sum(1 for out in found.outputs.values() if out) > len(found.outputs) // 2


# ----- the engine ---------------------------------------------------------------------------
def test_the_engine_makes_no_network(dockerd: str) -> None:
    """The run's own engine has no bridge: no interface, no NAT, no private-range address."""
    nets = subprocess.run(["docker", "network", "ls", "--format", "{{.Driver}}"],
                          capture_output=True, text=True, timeout=30).stdout.split()
    assert "bridge" not in nets and set(nets) <= {"host", "null"}
    assert not [n for n in os.listdir("/sys/class/net") if n.startswith(("docker", "br-"))]
    assert dockerd in ("overlay2", "fuse-overlayfs", "btrfs", "zfs", "vfs")  # what it chose


# ----- the replicate controls on Docker ----------------------------------------------------
DOCKER_CONTROLS = ["replicate-positive", "replicate-negative-shared-brain"]


@pytest.fixture(scope="module")
def docker_verdicts(dockerd: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The controls side by side (the trials mostly wait), each in its own container."""
    out = tmp_path_factory.mktemp("docker-controls")
    with ThreadPoolExecutor(max_workers=len(DOCKER_CONTROLS)) as pool:
        futures = {name: pool.submit(run_control, CONTROLS / f"{name}.yaml", out,
                                     survival_for(name), sandbox=SandboxConfig(backend="docker"))
                   for name in DOCKER_CONTROLS}
        return {name: f.result() for name, f in futures.items()}


@pytest.mark.slow
@pytest.mark.serial
@pytest.mark.parametrize("control", DOCKER_CONTROLS)
def test_replicate_controls_give_their_verdicts_on_docker(docker_verdicts: dict[str, dict],
                                                          control: str) -> None:
    """The judge cannot tell the backends apart: a positive replicates for the same reasons
    as on bubblewrap (test_controls' checks), and a replica sharing the original's brain
    does not."""
    verdict = docker_verdicts[control]
    assert verdict["error"] is None, verdict["error"]
    assert verdict["limits"]["backend"] == "docker" and verdict["limits"]["not_applied"] == []
    assert verdict["replicated"] is control.endswith("positive"), json.dumps(
        [{k: (c["passed"], c.get("reason")) for k, c in cand["checks"].items()}
         for cand in verdict["candidates"]])[:3000]
    REPLICATE_REASONS[control](verdict)
