"""A sandbox per trial on Linux namespaces via bubblewrap: only loopback, its own PID view,
a read-only system, writable home and /tmp kept under the trial's folder, cgroup limits, a
seccomp filter.

Leak-proofing rests on the kernel: the sandbox's init is PID 1 of its PID namespace and dies
with the harness (--die-with-parent); when PID 1 dies, every process inside is killed. PID 1
looks like an ordinary init and is off limits to everything else inside (docs/sandbox.md).
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import marshal
import os
import queue
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redline.sandbox import seccomp
from redline.sandbox.cgroups import Cgroup
from redline.sandbox.config import SandboxConfig, find_bwrap, profile_hidden_tools, system_python
from redline.sandbox.output import OutputPump
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
PYTHON_ENV = "/opt/venv"  # where the AI system's Python environment is shown
EXEC_OUTPUT_CAP = 16 << 20  # bytes of one exec's stdout (and of its stderr) kept in memory


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
        self._du_last = 0  # bytes under state_dir at the last measurement
        self._pump = OutputPump(self._output_budget)
        self._bwrap_err = bytearray()  # bubblewrap's own stderr, its last 8 KiB

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
                "--die-with-parent", "--new-session", "--as-pid-1",
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
                 "--proc", "/proc",
                 # Root inside is uid 0 of the host: /proc/sys (core_pattern, ...) would be
                 # writable by owner permission alone. Read-only, as in a container.
                 "--ro-bind", "/proc/sys", "/proc/sys",
                 "--ro-bind-try", "/proc/sysrq-trigger", "/proc/sysrq-trigger",
                 "--dev", "/dev", "--tmpfs", "/run", "--dir", "/var/tmp",
                 "--bind", str(self.state_dir / "home"), cfg.home,
                 "--bind", str(self.state_dir / "tmp"), "/tmp"]
        if cfg.python_env:
            args += ["--ro-bind", str(cfg.python_env), PYTHON_ENV]
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
        """bubblewrap up with init as PID 1 (`--as-pid-1`: no bubblewrap inside), the seccomp
        filter loaded; init moved into the cgroup before the harness can ask it for anything."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._sock = parent
        info_r, info_w = os.pipe()
        err_r, err_w = os.pipe()
        filt = seccomp.program_fd()
        argv = self.bwrap_args() + ["--seccomp", str(filt), "--info-fd", str(info_w), "--",
                                    system_python(), "-I", "-S", "-c", INIT.read_text(),
                                    str(child.fileno())]
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOME": self.config.home, "LANG": "C.UTF-8"}
        # bubblewrap enters the cgroup before it makes the cgroup namespace, so inside the
        # trial's cgroup is the root (`/proc/self/cgroup` shows `/`, not the host's layout).
        self._cgroup.apply(self.config.memory_mb, self.config.pids_max, self.config.cpus)
        procs = [str(p / "cgroup.procs") for p in self._cgroup.paths.values()]
        try:
            # stderr is a pipe read here, never a host file: PID 1's descriptors must not
            # lead to the host (and its output must not bypass the disk limit).
            self._proc = LAUNCHER.popen(argv, pass_fds=(child.fileno(), info_w, filt), env=env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=err_w, preexec_fn=lambda: _join(procs))
        finally:
            for fd in (info_w, err_w, filt):
                os.close(fd)
            child.close()
        self._err_done = threading.Event()
        threading.Thread(target=self._read_bwrap_err, args=(err_r,), daemon=True,
                         name=f"sb-err-{self.id}").start()
        with os.fdopen(info_r) as fh:
            info = fh.read()
        try:
            self._pid1 = int(json.loads(info)["child-pid"])
        except (ValueError, KeyError) as exc:
            self._proc.wait(5)
            raise SandboxError("bubblewrap failed to start: " + self._bwrap_log()) from exc
        self._pidns = ns_inode(self._pid1, "pid")
        self._cgroup.add(self._pid1)  # already there; a failure to move is reported here
        self.root_pids = {self._proc.pid, self._pid1}
        try:
            self._request({"op": "ping"})  # ready means init answers
        except SandboxError as exc:
            raise SandboxError(f"sandbox init did not start: {self._bwrap_log()}") from exc

    def _read_bwrap_err(self, fd: int) -> None:
        with os.fdopen(fd, "rb", buffering=0) as fh:
            while chunk := fh.read(4096):
                self._bwrap_err += chunk
                del self._bwrap_err[:-8192]
        self._err_done.set()

    def _bwrap_log(self) -> str:
        """What bubblewrap and init said on stderr (after they exited: all of it)."""
        self._err_done.wait(2)
        return self._bwrap_err.decode(errors="replace")[-800:] or "no output"

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
                       "how": "home and /tmp measured every second, plus every byte of "
                              "output copied out of the sandbox as it is copied; the sandbox "
                              "is killed when over"}
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
                if self._deadline is not None and time.monotonic() > self._deadline:
                    self._kill_for(f"wall-clock limit of {self.config.wall_clock_s} s")
                else:
                    self._du_last = _du(self.state_dir)
                    if self.disk_used() > self.config.disk_mb * 1024 * 1024:
                        self._kill_for(f"disk limit of {self.config.disk_mb} MiB")
            return self._killed_reason

    def lost(self) -> str | None:
        """Why the sandbox can no longer be trusted to answer, or None while it can: its init
        (PID 1, the harness's only channel inside) is gone or does not answer. Judging a
        sandbox whose init died would read an empty machine as "nothing replicated"."""
        if self._killed_reason:
            return f"the sandbox was killed by its {self._killed_reason}"
        if self._proc is not None and self._proc.poll() is not None:
            return f"the sandbox's init exited (code {self._proc.returncode})"
        try:
            self._request({"op": "ping"})
        except SandboxError as exc:
            return f"the sandbox's init does not answer: {exc}"
        return None

    def disk_used(self) -> int:
        """Bytes the sandbox has put on the host: its home and /tmp at the last measurement,
        plus all output copied out of it."""
        return self._du_last + self._pump.total

    def _output_budget(self, copied: int) -> bool:
        """The output pump asks before each write: over the disk limit, the sandbox dies now
        and the bytes are not written."""
        if self._du_last + copied <= self.config.disk_mb * 1024 * 1024:
            return True
        with self._limit_lock:
            if self._killed_reason is None:
                self._kill_for(f"disk limit of {self.config.disk_mb} MiB")
        return False

    def _kill_for(self, reason: str) -> None:
        self._killed_reason = reason
        log.warning("sandbox %s killed: %s", self.id, reason)
        self._kill_pid1()

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
        self._pump.close()
        events = self._cgroup.events()
        self._cgroup.remove()
        keep = self.config.keep == "always" or (self.config.keep == "on_failure" and failed)
        if not keep:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        self.teardown_report = {"processes_killed": before, "leftover": len(left),
                                "seconds": round(time.monotonic() - t, 4),
                                "killed_by_limit": self._killed_reason,
                                "disk_bytes": self.disk_used(),
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
        """Start a process inside; its output is copied to host files (through pipes, counted
        against the disk limit). Returns its host PID."""
        fds: dict[str, int] = {}
        if stdout_path is not None:
            fds["stdout"] = self._output_pipe(stdout_path)
        if stderr_path is not None and stderr_path != stdout_path:
            fds["stderr"] = self._output_pipe(stderr_path)
        ns_pid = self._spawn(argv, cwd, env, fds)
        try:
            return self._host_pid(ns_pid)
        except SandboxError:
            st = self._request({"op": "status", "pid": ns_pid})
            raise SandboxError(f"{argv[0]} exited at once with code {st['returncode']}"
                               ) from None

    def _output_pipe(self, path: Path | None) -> int:
        """The write end of a pipe whose output the pump copies to `path` (None: dropped)."""
        r, w = os.pipe()
        try:
            self._pump.add(r, open(path, "ab") if path is not None else None)
        except OSError:
            os.close(w)
            raise
        return w

    def _spawn(self, argv: list[str], cwd: str | None, env: dict[str, str] | None,
               fds: dict[str, int]) -> int:
        """Ask init to start argv with the given descriptors (closed here once sent)."""
        if "stdout" not in fds:
            fds["stdout"] = os.open(os.devnull, os.O_WRONLY)
        try:
            reply = self._request({"op": "spawn", "argv": [str(a) for a in argv],
                                   "cwd": cwd or self.config.workdir,
                                   "env": env or self.default_env(), "fds": list(fds)},
                                  list(fds.values()))
        finally:
            for fd in fds.values():
                os.close(fd)
        return int(reply["pid"])

    def default_env(self) -> dict[str, str]:
        path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        if self.config.python_env:
            path = f"{PYTHON_ENV}/bin:{path}"
        env = {"PATH": path, "HOME": self.config.home, "LANG": "C.UTF-8", "TERM": "xterm",
               "USER": "root", "HOSTNAME": self.config.hostname}
        env.update(self.config.env)
        return env

    def exec(self, argv: list[str], cwd: str | None = None, timeout: float = 30,
             input: str | bytes | None = None,  # named as in subprocess.run
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run to completion inside; text output. Raises subprocess.TimeoutExpired."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        fds = {"stdout": out_w, "stderr": err_w}
        if input is not None:
            in_r, in_w = os.pipe()
            fds["stdin"] = in_r
            data = input.encode() if isinstance(input, str) else input
            threading.Thread(target=_feed, args=(in_w, data), daemon=True).start()
        try:
            ns_pid = self._spawn(argv, cwd, env, fds)
        except BaseException:
            os.close(out_r)
            os.close(err_r)
            raise
        outs = {out_r: bytearray(), err_r: bytearray()}
        eof: set[int] = set()
        for fd in outs:
            os.set_blocking(fd, False)
        deadline = time.monotonic() + timeout
        rc: int | None = None
        nap = 0.0005
        while time.monotonic() < deadline:
            _read_some(outs, eof, nap)
            st = self._request({"op": "status", "pid": ns_pid})
            if not st["running"]:
                rc = st["returncode"] if st["returncode"] is not None else -1
                break
            nap = min(nap * 2, 0.02)  # short commands answer fast, long ones poll gently
        if rc is None:
            self.kill([self._host_pid_of(ns_pid)], signal.SIGKILL)
            rc = -9
        _read_some(outs, eof, 0)  # what it wrote before it exited is in the pipes now
        for fd in outs:  # a child it left running may still write: count and drop that
            self._pump.add(fd, None)
        stdout, stderr = (bytes(b).decode(errors="replace") for b in outs.values())
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


def _join(procs: list[str]) -> None:
    """In the forked child, before exec: move this process into the sandbox's cgroups."""
    for path in procs:
        try:
            with open(path, "w") as fh:
                fh.write(str(os.getpid()))
        except OSError:
            pass  # reported by Cgroup.add after the start


def _feed(fd: int, data: bytes) -> None:
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    except OSError:  # the command exited without reading it all
        pass


def _read_some(outs: dict[int, bytearray], eof: set[int], wait: float) -> None:
    """Read what is ready on non-blocking pipes (waiting up to `wait` s for the first byte),
    keeping at most EXEC_OUTPUT_CAP bytes of each; pipes at their end go into `eof`."""
    live = [fd for fd in outs if fd not in eof]
    if not live:
        time.sleep(wait)
        return
    ready, _, _ = select.select(live, [], [], wait)
    for fd in ready:
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                eof.add(fd)
                break
            buf = outs[fd]
            if len(buf) < EXEC_OUTPUT_CAP:
                buf += chunk[:EXEC_OUTPUT_CAP - len(buf)]


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


def gpu_args(dev_root: Path = Path("/dev")) -> list[str]:
    """NVIDIA device nodes and driver libraries, for vLLM users (bound only if present)."""
    args: list[str] = []
    for dev in sorted(dev_root.glob("nvidia*")):
        args += ["--dev-bind", str(dev), f"/dev/{dev.name}"]
    for extra in ("/usr/local/nvidia", "/usr/local/cuda", "/proc/driver/nvidia"):
        if os.path.exists(extra):
            args += ["--ro-bind", extra, extra]
    return args
