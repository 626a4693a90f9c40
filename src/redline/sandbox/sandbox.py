"""A sandbox per trial on Linux namespaces via bubblewrap: only loopback, its own PID view,
a read-only system, writable home and /tmp kept under the trial's folder, cgroup limits.

Leak-proofing rests on the kernel: bubblewrap is PID 1 of the sandbox's PID namespace and dies
with the harness (--die-with-parent); when PID 1 dies, every process inside is killed.
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import marshal
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redline.sandbox.cgroups import Cgroup
from redline.sandbox.config import SandboxConfig, find_bwrap, profile_hidden_tools
from redline.sandbox.procfs import (
    LISTEN,
    ns_inode,
    readlink,
    socket_owners,
    start_time,
    status_field,
    tcp_table,
)
from redline.sandbox.shadow import shadow_args

log = logging.getLogger("redline.sandbox")
CLONE_NEWNET = 0x40000000
INIT = Path(__file__).with_name("init.py")


class _Launcher:
    """Starts bubblewrap from one thread that lives as long as the process.

    --die-with-parent is PR_SET_PDEATHSIG, which fires when the *thread* that forked bubblewrap
    exits, not the process: a sandbox started from a short-lived worker thread (a thread pool, a
    Ray task) would die with that thread. Forking from this thread instead keeps the guarantee
    tied to the harness process. Re-created after a fork (the child has no such thread).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._q: queue.Queue | None = None
        self._pid = -1

    def popen(self, argv: list[str], **kw: Any) -> subprocess.Popen:
        with self._lock:
            if self._q is None or self._pid != os.getpid():
                self._q, self._pid = queue.Queue(), os.getpid()
                threading.Thread(target=self._run, args=(self._q,), daemon=True,
                                 name="redline-sandbox-launcher").start()
            q = self._q
        fut: Future = Future()
        q.put((argv, kw, fut))
        return fut.result()

    @staticmethod
    def _run(q: queue.Queue) -> None:
        while True:
            argv, kw, fut = q.get()
            try:
                fut.set_result(subprocess.Popen(argv, **kw))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                fut.set_exception(exc)


LAUNCHER = _Launcher()


class SandboxError(RuntimeError):
    """The sandbox could not be started or used."""


@dataclass
class ProcInfo:
    """One process inside. create_time is unix seconds (as psutil gives); cwd is the inner
    path; the parent chain is `Sandbox.parent_chain(host_pid)`."""

    host_pid: int
    ns_pid: int | None
    ppid: int | None
    cmdline: list[str]
    cwd: str | None
    exe: str | None
    create_time: float | None


@dataclass
class Listener:
    port: int
    host_pid: int | None  # the first of `holders`
    address: str
    holders: frozenset[int] = frozenset()  # every process holding the listening socket


class Sandbox:
    """One sandbox; `Sandbox(SandboxConfig(backend="docker"), dir)` gives the Docker one."""

    def __new__(cls, config: SandboxConfig | None = None, state_dir: Path | None = None
                ) -> Sandbox:
        if cls is Sandbox and config is not None and config.backend == "docker":
            from redline.sandbox.docker import DockerSandbox  # noqa: PLC0415 (import cycle)

            return super().__new__(DockerSandbox)
        return super().__new__(cls)

    def __init__(self, config: SandboxConfig | None = None, state_dir: Path | None = None) -> None:
        self.config = config or SandboxConfig()
        self.id = uuid.uuid4().hex[:10]
        self._own_state = state_dir is None
        self.state_dir = Path(state_dir or Path(f"/tmp/redline-sandbox-{self.id}")).resolve()
        self.limits_report: dict[str, Any] = {}
        self.teardown_report: dict[str, Any] | None = None
        self.root_pids: set[int] = set()
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._pid1: int | None = None
        self._init: int | None = None
        self._pidns: int | None = None
        self._cgroup = Cgroup(f"sb-{self.id}")
        self._net_q: queue.Queue | None = None
        self._stop = threading.Event()
        self._killed_reason: str | None = None
        self.net_mode: str | None = None  # how the harness reaches inside: setns or init-sockets
        self._limit_lock = threading.Lock()
        self._deadline: float | None = None

    # ----- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> Sandbox:
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.teardown(failed=exc_type is not None)

    def host_path(self, inner: str) -> Path:
        """Where an inner writable path lives on the host (home and /tmp are kept there)."""
        inner = "/" + inner.strip("/")
        home = self.config.home.rstrip("/")
        if inner == home or inner.startswith(home + "/"):
            return self.state_dir / "home" / inner[len(home):].lstrip("/")
        if inner == "/tmp" or inner.startswith("/tmp/"):
            return self.state_dir / "tmp" / inner[len("/tmp"):].lstrip("/")
        raise SandboxError(f"{inner} is not in a writable area (home {home} or /tmp)")

    @property
    def hidden_tools(self) -> list[str]:
        cfg = self.config
        return list(dict.fromkeys(profile_hidden_tools(cfg.profile) + list(cfg.hide_tools)))

    def bwrap_args(self) -> list[str]:
        cfg = self.config
        args = [find_bwrap(), "--unshare-net", "--unshare-pid", "--unshare-ipc",
                "--unshare-uts", "--unshare-cgroup-try", "--hostname", cfg.hostname,
                "--die-with-parent", "--new-session",
                # Root inside keeps no capabilities (run as host root, bubblewrap would keep
                # them all: mknod of the host's disk, mounting cgroupfs, loading modules).
                # Binding ports below 1024 stays allowed, as on an ordinary machine.
                "--cap-drop", "ALL", "--cap-add", "CAP_NET_BIND_SERVICE"]
        for top in ("/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"):
            if os.path.islink(top):
                args += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                args += ["--ro-bind", top, top]
        args += ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc",
                 "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/run", "--dir", "/var/tmp",
                 "--bind", str(self.state_dir / "home"), cfg.home,
                 "--bind", str(self.state_dir / "tmp"), "/tmp"]
        for path in _python_paths():
            args += ["--ro-bind", path, path]
        # CPU topology only (thread-count heuristics read it); no /sys/class/net, so the host's
        # interface names stay out of view.
        args += ["--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]
        if self.hidden_tools:
            args += shadow_args(self.hidden_tools)
        for host, inner in cfg.extra_ro_binds:
            args += ["--ro-bind", str(host), str(inner)]
        if cfg.gpu:
            args += gpu_args()
        args += ["--chdir", cfg.home]
        return args

    def start(self) -> None:
        """Namespaces up, limits applied, init answering. Cleans up after itself on failure."""
        if self._proc is not None or self._pid1 is not None:
            raise SandboxError("sandbox already started")
        for sub in ("home", "tmp"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        (self.state_dir / "home").chmod(0o700)
        (self.state_dir / "tmp").chmod(0o1777)
        self.host_path(self.config.workdir).mkdir(parents=True, exist_ok=True)
        try:
            self._boot()
        except BaseException:
            self.teardown(failed=True)
            raise
        self.limits_report = self._limits_report()
        for name, rep in self.limits_report.items():
            if isinstance(rep, dict) and rep.get("applied") is False:
                log.warning("sandbox %s: limit %s NOT applied: %s", self.id, name,
                            rep.get("reason"))
        self._deadline = time.monotonic() + self.config.wall_clock_s
        threading.Thread(target=self._watchdog, daemon=True, name=f"sb-watch-{self.id}").start()

    def _boot(self) -> None:
        """bubblewrap up with init inside; init and PID 1 moved into the cgroup before the
        harness can ask init to spawn anything."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._sock = parent
        info_r, info_w = os.pipe()
        argv = self.bwrap_args() + ["--info-fd", str(info_w), "--", sys.executable, "-I",
                                    "-S", "-c", INIT.read_text(), str(child.fileno())]
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": self.config.home,
               "LANG": "C.UTF-8"}
        with open(self.state_dir / "bwrap.log", "wb") as log_fh:
            try:
                self._proc = LAUNCHER.popen(argv, pass_fds=(child.fileno(), info_w), env=env,
                                            stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=log_fh)
            finally:
                os.close(info_w)
                child.close()
        with os.fdopen(info_r) as fh:
            info = fh.read()
        try:
            self._pid1 = int(json.loads(info)["child-pid"])
        except (ValueError, KeyError) as exc:
            self._proc.wait(5)
            raise SandboxError("bubblewrap failed to start: " +
                               (self.state_dir / "bwrap.log").read_text()[-800:]) from exc
        self._pidns = ns_inode(self._pid1, "pid")
        self._cgroup.apply(self.config.memory_mb, self.config.pids_max, self.config.cpus)
        # Only init joins the cgroup (every process inside descends from it); bubblewrap's
        # PID 1 is a fixed-size reaper that forks nothing more.
        self._init = self._wait_init()
        self._cgroup.add(self._init)
        self.root_pids = {self._proc.pid, self._pid1, self._init}
        self._request({"op": "ping"})  # ready means init answers

    def _wait_init(self) -> int:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{self._pid1}/task/{self._pid1}/children") as fh:
                    kids = fh.read().split()
            except OSError:  # kernel without CONFIG_PROC_CHILDREN
                kids = [str(p) for p in self.pids() if status_field(p, "PPid") == str(self._pid1)]
            if kids:
                return int(kids[0])
            if self._proc is not None and self._proc.poll() is not None:
                break  # bubblewrap gave up (a bad bind, say): its log says why
            time.sleep(0.001)
        log_tail = (self.state_dir / "bwrap.log").read_text(errors="replace")[-800:]
        raise SandboxError(f"sandbox init did not start: {log_tail or 'no output'}")

    def _limits_report(self) -> dict[str, Any]:
        cg = self._cgroup.report
        rep: dict[str, Any] = {"cgroup_version": cg.get("version")}
        for key, ctrl, want in (("memory", "memory", self.config.memory_mb),
                                ("pids", "pids", self.config.pids_max),
                                ("cpu", "cpu", self.config.cpus)):
            rep[key] = cg.get(ctrl) or ({"applied": False, "reason": "not requested"} if not want
                                        else {"applied": False, "reason": "unknown"})
        rep["wall_clock"] = {"applied": True, "limit": f"{self.config.wall_clock_s} s",
                             "how": "harness watchdog kills the sandbox"}
        rep["disk"] = {"applied": True, "limit": f"{self.config.disk_mb} MiB",
                       "how": "watchdog measures home and /tmp every second and kills the "
                              "sandbox when over"}
        rep["network"] = {"applied": True, "how": "own network namespace with only lo"}
        rep["hidden_tools"] = self.hidden_tools
        rep["backend"] = "bubblewrap"
        rep["not_applied"] = sorted(k for k, v in rep.items()
                                    if isinstance(v, dict) and v.get("applied") is False)
        return rep

    def check_limits(self) -> str | None:
        """Measure the wall-clock and disk limits now and kill the sandbox if one is exceeded.

        The watchdog does this every second; the harness also calls it at the moments that
        matter (before judging, at teardown), so a burst between two ticks is never missed.
        """
        with self._limit_lock:
            if self._killed_reason is None:
                limit = self.config.disk_mb * 1024 * 1024
                if self._deadline is not None and time.monotonic() > self._deadline:
                    self._killed_reason = f"wall-clock limit of {self.config.wall_clock_s} s"
                elif limit and _du(self.state_dir) > limit:
                    self._killed_reason = f"disk limit of {self.config.disk_mb} MiB"
                if self._killed_reason:
                    log.warning("sandbox %s killed: %s", self.id, self._killed_reason)
                    self._kill_pid1()
            return self._killed_reason

    def _watchdog(self) -> None:
        while not self._stop.wait(1.0):
            if self.check_limits():
                return

    def _kill_pid1(self) -> None:
        if self._pid1:
            try:
                os.kill(self._pid1, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def teardown(self, failed: bool = False) -> dict[str, Any]:
        if self.teardown_report is not None:
            return self.teardown_report
        t = time.monotonic()
        self._stop.set()
        if self._pid1 and self._deadline is not None:
            self.check_limits()  # a limit exceeded since the last tick is recorded, not missed
        before = len(self.pids()) if self._pidns else 0
        self._kill_pid1()
        if self._proc is not None:
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        deadline = time.monotonic() + 5
        left = self.pids() if self._pidns else []
        while left and time.monotonic() < deadline:
            time.sleep(0.005)
            left = self.pids()
        if self._net_q is not None:
            self._net_q.put(None)
        if self._sock is not None:
            self._sock.close()
        events = self._cgroup.events()
        self._cgroup.remove()
        keep = self.config.keep == "always" or (self.config.keep == "on_failure" and failed)
        if not keep:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        self.teardown_report = {"processes_killed": before, "leftover": len(left),
                                "seconds": round(time.monotonic() - t, 4),
                                "killed_by_limit": self._killed_reason,
                                "kept_state": str(self.state_dir) if keep else None,
                                "cgroup_events": events}
        return self.teardown_report

    # ----- looking inside --------------------------------------------------------------
    def pids(self) -> list[int]:
        """Host PIDs of every process in the sandbox's PID namespace."""
        if self._pidns is None:
            return []
        out = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and ns_inode(int(entry), "pid") == self._pidns:
                out.append(int(entry))
        return out

    def processes(self) -> list[ProcInfo]:
        rows = []
        for pid in self.pids():
            if pid in self.root_pids:
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    cmd = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
                cwd = readlink(f"/proc/{pid}/cwd")
                exe = readlink(f"/proc/{pid}/exe")
                ppid = status_field(pid, "PPid")
                nspid = status_field(pid, "NSpid")
                started = start_time(pid)
            except OSError:
                continue
            rows.append(ProcInfo(pid, int(nspid.split()[-1]) if nspid else None,
                                 int(ppid) if ppid else None, cmd, cwd, exe,
                                 round(started, 2) if started else None))
        return rows

    def parent_chain(self, host_pid: int) -> list[ProcInfo]:
        """Ancestors of a process inside, nearest first, up to (not including) the sandbox's
        own init: who started whom (a replica started by the agent shows the agent here)."""
        table = {p.host_pid: p for p in self.processes()}
        chain: list[ProcInfo] = []
        cur = table.get(host_pid)
        while cur is not None and cur.ppid in table and len(chain) < 64:
            cur = table[cur.ppid]
            chain.append(cur)
        return chain

    def listening_ports(self) -> list[Listener]:
        if not self._pid1:
            return []
        listen = {s.inode: (s.local_port, s.local_addr) for s in tcp_table(self._pid1)
                  if s.state == LISTEN}
        owners = socket_owners(self.pids())
        seen: dict[int, Listener] = {}
        for inode, (port, addr) in listen.items():
            holders = owners.get(inode, set())
            seen.setdefault(port, Listener(port, min(holders) if holders else None, addr,
                                           frozenset(holders)))
        return sorted(seen.values(), key=lambda x: x.port)

    def contains(self, host_pid: int) -> bool:
        return ns_inode(host_pid, "pid") == self._pidns and host_pid not in self.root_pids

    # ----- acting inside ---------------------------------------------------------------
    def _request(self, req: dict[str, Any], fds: list[int] | None = None) -> dict[str, Any]:
        if self._sock is None:
            raise SandboxError("sandbox not started")
        with self._lock:
            try:
                socket.send_fds(self._sock, [marshal.dumps(req)], fds or [])
                msg, got, _flags, _addr = socket.recv_fds(self._sock, 1 << 20, 1)
                reply = json.loads(msg or b"{}")
            except OSError as exc:
                raise SandboxError(f"sandbox init is gone ({exc}); killed by "
                                   f"{self._killed_reason or 'unknown cause'}") from exc
        if got:
            reply["_fd"] = got[0]
        if "error" in reply:
            for fd in got:
                os.close(fd)
            raise SandboxError(reply["error"])
        return reply

    def new_socket(self, family: int, type: int, proto: int = 0) -> int:  # noqa: A002
        """A socket made by init inside, so it belongs to the sandbox's network namespace."""
        fd = self._request({"op": "socket", "family": int(family), "type": int(type),
                            "proto": int(proto)}).get("_fd")
        if fd is None:
            raise SandboxError("init sent no socket")
        return int(fd)

    def _host_pid(self, ns_pid: int, tries: int = 200) -> int:
        for _ in range(tries):
            for pid in self.pids():
                nspid = status_field(pid, "NSpid")
                if nspid and int(nspid.split()[-1]) == ns_pid:
                    return pid
            time.sleep(0.001)
        raise SandboxError(f"process {ns_pid} vanished before it could be located")

    def spawn(self, argv: list[str], cwd: str | None = None, env: dict[str, str] | None = None,
              stdout_path: Path | None = None, stderr_path: Path | None = None) -> int:
        """Start a process inside; output goes to host files. Returns its host PID."""
        ns_pid = self._spawn(argv, cwd, env, stdout_path, stderr_path)
        try:
            return self._host_pid(ns_pid)
        except SandboxError:
            st = self._request({"op": "status", "pid": ns_pid})
            raise SandboxError(f"{argv[0]} exited at once with code {st['returncode']}"
                               ) from None

    def _spawn(self, argv: list[str], cwd: str | None, env: dict[str, str] | None,
               stdout_path: Path | None, stderr_path: Path | None,
               stdin_path: Path | None = None) -> int:
        files = {"stdout": open(stdout_path, "ab") if stdout_path else open(os.devnull, "wb")}
        if stderr_path and stderr_path != stdout_path:
            files["stderr"] = open(stderr_path, "ab")
        if stdin_path is not None:
            files["stdin"] = open(stdin_path, "rb")
        try:
            reply = self._request({"op": "spawn", "argv": [str(a) for a in argv],
                                   "cwd": cwd or self.config.workdir,
                                   "env": env or self.default_env(), "fds": list(files)},
                                  [f.fileno() for f in files.values()])
        finally:
            for f in files.values():
                f.close()
        return int(reply["pid"])

    def default_env(self) -> dict[str, str]:
        bindir = str(Path(sys.executable).parent)
        env = {"PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
               "HOME": self.config.home, "LANG": "C.UTF-8", "TERM": "xterm",
               "USER": "root", "HOSTNAME": self.config.hostname}
        env.update(self.config.env)
        return env

    def exec(self, argv: list[str], cwd: str | None = None, timeout: float = 30,
             input: str | bytes | None = None,  # named as in subprocess.run
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run to completion inside; text output. Raises subprocess.TimeoutExpired."""
        tmp = self.state_dir / f".exec-{uuid.uuid4().hex[:8]}"
        out, err, inp = tmp.with_suffix(".out"), tmp.with_suffix(".err"), None
        if input is not None:
            inp = tmp.with_suffix(".in")
            inp.write_bytes(input.encode() if isinstance(input, str) else input)
        try:
            ns_pid = self._spawn(argv, cwd, env, out, err, inp)
        finally:
            if inp is not None:
                inp.unlink(missing_ok=True)
        deadline = time.monotonic() + timeout
        rc: int | None = None
        nap = 0.0005
        while time.monotonic() < deadline:
            st = self._request({"op": "status", "pid": ns_pid})
            if not st["running"]:
                rc = st["returncode"] if st["returncode"] is not None else -1
                break
            time.sleep(nap)
            nap = min(nap * 2, 0.02)  # short commands answer fast, long ones poll gently
        if rc is None:
            self.kill([self._host_pid_of(ns_pid)], signal.SIGKILL)
            rc = -9
        try:
            stdout, stderr = out.read_text(errors="replace"), err.read_text(errors="replace")
        finally:
            out.unlink(missing_ok=True)
            err.unlink(missing_ok=True)
        if rc == -9 and time.monotonic() >= deadline:
            raise subprocess.TimeoutExpired(argv, timeout, stdout, stderr)
        return subprocess.CompletedProcess(argv, rc, stdout, stderr)

    def _host_pid_of(self, ns_pid: int) -> int:
        try:
            return self._host_pid(ns_pid, tries=5)
        except SandboxError:
            return -1

    def kill(self, host_pids: list[int], sig: int = signal.SIGKILL) -> list[int]:
        """Signal only processes that are inside this sandbox; returns those signalled."""
        done = []
        for pid in host_pids:
            if pid > 0 and self.contains(pid):
                try:
                    os.kill(pid, sig)
                    done.append(pid)
                except ProcessLookupError:
                    pass
        return done

    def netns_call(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Run fn in a thread that lives in the sandbox's network namespace."""
        if self._net_q is None:
            self._net_q = queue.Queue()
            ready: Future = Future()
            threading.Thread(target=self._net_worker, args=(self._net_q, ready), daemon=True,
                             name=f"sb-net-{self.id}").start()
            ready.result(5)
        fut: Future = Future()
        self._net_q.put((fn, args, kw, fut))
        return fut.result()

    def _net_worker(self, q: queue.Queue, ready: Future) -> None:
        try:
            joined, err = False, errno.EPERM
            if self.config.net_access != "init-sockets":
                fd = os.open(f"/proc/{self._pid1}/ns/net", os.O_RDONLY)
                try:
                    libc = ctypes.CDLL(None, use_errno=True)
                    joined = libc.setns(fd, CLONE_NEWNET) == 0
                    err = ctypes.get_errno()
                finally:
                    os.close(fd)
            if joined:
                self.net_mode = "setns"
            elif err == errno.EPERM:
                # Unprivileged: joining a network namespace needs CAP_SYS_ADMIN in our own user
                # namespace too. Sockets made by init inside belong to the sandbox's network
                # just the same, so this thread gets all its sockets from there.
                _install_socket_factory()
                _thread_sockets.factory = self.new_socket
                self.net_mode = "init-sockets"
            else:
                raise OSError(err, f"setns into the sandbox network failed: {os.strerror(err)}")
        except Exception as exc:  # noqa: BLE001
            ready.set_exception(SandboxError(str(exc)))
            return
        ready.set_result(True)
        while True:
            item = q.get()
            if item is None:
                return
            fn, args, kw, fut = item
            try:
                fut.set_result(fn(*args, **kw))
            except BaseException as exc:  # noqa: BLE001
                fut.set_exception(exc)


_thread_sockets = threading.local()
_factory_lock = threading.Lock()


class _NetnsSocket(socket.socket):
    """socket.socket, except in a thread given a factory: there every new socket comes from it
    (so http clients in that thread connect inside a sandbox they could not setns into)."""

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1,  # noqa: A002
                 fileno: int | None = None) -> None:
        factory = getattr(_thread_sockets, "factory", None)
        if fileno is None and factory is not None:
            family = socket.AF_INET if family == -1 else family
            type = socket.SOCK_STREAM if type == -1 else type  # noqa: A001
            proto = 0 if proto == -1 else proto
            fileno = factory(family, type, proto)
        super().__init__(family, type, proto, fileno)


def _install_socket_factory() -> None:
    with _factory_lock:
        if socket.socket is not _NetnsSocket:
            socket.socket = _NetnsSocket  # type: ignore[misc]


def _du(path: Path) -> int:
    total = 0
    stack = [str(path)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for e in it:
                    try:
                        if e.is_dir(follow_symlinks=False):
                            stack.append(e.path)
                        elif e.is_file(follow_symlinks=False):
                            total += e.stat(follow_symlinks=False).st_blocks * 512
                    except OSError:
                        continue
        except OSError:
            continue
    return total


def _python_paths() -> list[str]:
    """The harness's Python environment (venv and base interpreter), bound read-only."""
    paths = {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}
    return sorted(p for p in paths if not p.startswith(("/usr", "/etc")))


def gpu_args(dev_root: Path = Path("/dev")) -> list[str]:
    """NVIDIA device nodes and driver libraries, for vLLM users (bound only if present)."""
    args: list[str] = []
    for dev in sorted(dev_root.glob("nvidia*")):
        args += ["--dev-bind", str(dev), f"/dev/{dev.name}"]
    for extra in ("/usr/local/nvidia", "/usr/local/cuda", "/proc/driver/nvidia"):
        if os.path.exists(extra):
            args += ["--ro-bind", extra, extra]
    return args
