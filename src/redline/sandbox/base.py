"""The sandbox contract every backend keeps, and what they share: limits and their watchdog,
teardown, starting and running processes inside through init, the process view and the
network bridge. A backend (`bwrap.py`, `docker.py`) only says how to boot the sandbox with
init inside, how to kill it, and what its limits report adds; `make_sandbox` picks one.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redline.sandbox.cgroups import Cgroup, hold, release
from redline.sandbox.channel import InitChannel
from redline.sandbox.config import PYTHON_ENV, SYSTEM_PATH, SandboxConfig, profile_hidden_tools
from redline.sandbox.errors import SandboxError
from redline.sandbox.hostroot import AREAS, close_store, move_dir, open_store, sandbox_store
from redline.sandbox.kmsg import KernelLog
from redline.sandbox.netbridge import NetBridge
from redline.sandbox.output import OutputPump, feed, read_some
from redline.sandbox.procview import Listener, ProcessView, ProcInfo
from redline.sandbox.smalldisk import SmallDisk

log = logging.getLogger("redline.sandbox")
INIT = Path(__file__).with_name("init.py")


class SandboxBase(ABC):
    """One sandbox: start (or `with`), act inside, look inside, tear down."""

    backend = "abstract"

    def __init__(self, config: SandboxConfig | None = None, state_dir: Path | None = None) -> None:
        self.config = config or SandboxConfig()
        self.id = uuid.uuid4().hex[:10]
        self.state_dir = Path(state_dir or Path(f"/tmp/redline-sandbox-{self.id}")).resolve()
        self.limits_report: dict[str, Any] = {}
        self.teardown_report: dict[str, Any] | None = None
        self.view = ProcessView()
        self._proc: subprocess.Popen | None = None  # the backend's outer process
        self._channel: InitChannel | None = None
        self._bridge: NetBridge | None = None
        self._cgroup = Cgroup(f"sb-{self.id}")
        self._held: int | None = None  # its cgroup's lock: this harness lives (cgroups.hold)
        self._kmsg = KernelLog()  # the kernel's log from the start: who its limits killed
        self._stop = threading.Event()
        self._killed_reason: str | None = None
        self._limit_lock = threading.Lock()
        self._deadline: float | None = None
        self._du_last = 0  # bytes under state_dir at the last measurement
        self._pump = OutputPump(self._output_budget)
        self.small_disk = SmallDisk(self.state_dir) if self.config.disk_size_mb else None
        # Where home and /tmp live while it runs, when not in the state folder: a folder whose
        # host path names nothing, as the mounts inside show it (redline.sandbox.hostroot).
        self.store: Path | None = None
        self._store_lock: int | None = None

    # ----- what a backend provides -----------------------------------------------------
    @abstractmethod
    def _boot(self) -> None:
        """Start the sandbox with init inside; set `self._proc`, `self._channel` and
        `self.view` (pid1, pidns, root_pids)."""

    def _kill_pid1(self) -> None:
        if self.view.pid1:
            try:
                os.kill(self.view.pid1, signal.SIGKILL)
            except ProcessLookupError:
                pass

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
        rep["kill_log"] = ({"applied": True, "how": "the kernel's log, from the sandbox's "
                            "start: every process its memory limit kills, named"}
                           if self._kmsg.error is None else
                           {"applied": False, "reason": self._kmsg.error})
        rep["hidden_tools"] = self.hidden_tools
        rep["backend"] = self.backend
        return rep

    # ----- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> SandboxBase:
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.teardown(failed=exc_type is not None)

    @property
    def pid1(self) -> int | None:
        """Host PID of the sandbox's PID 1; its /proc/PID/ns/* are the sandbox's namespaces."""
        return self.view.pid1

    @property
    def root_pids(self) -> set[int]:
        """Host PIDs of the sandbox's own machinery (never candidates, never killed by kill)."""
        return self.view.root_pids

    @property
    def net_mode(self) -> str | None:
        """How the harness reaches inside: "setns" or "init-sockets" (None until first use)."""
        return self._bridge.mode if self._bridge else None

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

    def start(self) -> None:
        """Namespaces up, limits applied, init answering. Cleans up after itself on failure."""
        if self._proc is not None or self.view.pid1 is not None:
            raise SandboxError("sandbox already started")
        if self.small_disk is not None:  # a tmpfs: inside, its binds show only /home, /tmp
            self.small_disk.mount(self.config.disk_size_mb * 1024 * 1024)
        self._held = hold(self._cgroup.name)  # before its cgroup exists: never taken for stale
        if os.geteuid() == 0:
            self._kmsg.open()
        else:
            self._kmsg.error = "not root: the kernel's log is not read; memory kills are " \
                               "counted, not named"
        try:
            self.place_areas()
            self._boot()
        except BaseException:
            self.teardown(failed=True)
            raise
        rep = self._limits_report()
        rep["not_applied"] = sorted(k for k, v in rep.items()
                                    if isinstance(v, dict) and v.get("applied") is False)
        self.limits_report = rep
        for name in rep["not_applied"]:
            log.warning("sandbox %s: limit %s NOT applied: %s", self.id, name,
                        rep[name].get("reason"))
        self._deadline = time.monotonic() + self.config.wall_clock_s
        threading.Thread(target=self._watchdog, daemon=True, name=f"sb-watch-{self.id}").start()

    def area(self, sub: str) -> Path:
        """The host folder bound at home (`"home"`) or /tmp (`"tmp"`)."""
        return (self.store or self.state_dir) / sub

    def place_areas(self) -> None:
        """Home and /tmp on the host, before bubblewrap binds them: in the neutral store while
        the sandbox runs, the state folder's `home` and `tmp` linking to them (what is already
        there moves in); in the state folder itself with a small disk or without the store.
        `start` does this; `release_areas` at teardown undoes it."""
        if self.small_disk is None:
            self.store = sandbox_store(self.state_dir, self.id)
        if self.store is not None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._store_lock = open_store(self.store, self.state_dir)
        for sub in AREAS:
            here = self.state_dir / sub
            if self.store is None:
                here.mkdir(parents=True, exist_ok=True)
                continue
            if here.is_dir() and not here.is_symlink():
                move_dir(here, self.area(sub))
            else:
                self.area(sub).mkdir()
                here.unlink(missing_ok=True)
            here.symlink_to(self.area(sub))
        (self.state_dir / "home").chmod(0o700)
        (self.state_dir / "tmp").chmod(0o1777)
        self.host_path(self.config.workdir).mkdir(parents=True, exist_ok=True)

    def release_areas(self, keep: bool) -> None:
        """Home and /tmp back into the state folder (kept) or gone, and the store with them."""
        if self.store is not None and self._store_lock is not None:
            close_store(self.store, self.state_dir, keep)
            os.close(self._store_lock)
            self._store_lock = None

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
                    self._du_last = du(self.state_dir) + (du(self.store) if self.store else 0)
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
            self.channel.request({"op": "ping"})
        except SandboxError as exc:
            return f"the sandbox's init does not answer: {exc}"
        return None

    def memory_kills(self) -> list[dict[str, Any]]:
        """Every process in this sandbox the kernel killed for memory so far, by PID and name
        (from its log, /dev/kmsg, by this sandbox's cgroup); empty where the log cannot be
        read (`limits_report` then says so, and the cgroup's counters still count them)."""
        return [k.public() for k in self._kmsg.memory_kills(self._cgroup.name)]

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

    def teardown(self, failed: bool = False) -> dict[str, Any]:
        if self.teardown_report is not None:
            return self.teardown_report
        t = time.monotonic()
        self._stop.set()
        if self.view.pid1 and self._deadline is not None:
            self.check_limits()  # a limit exceeded since the last tick is recorded, not missed
        before = len(self.pids())
        self._kill_pid1()
        if self._proc is not None:
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        deadline = time.monotonic() + 5
        left = self.pids()
        while left and time.monotonic() < deadline:
            time.sleep(0.005)
            left = self.pids()
        if self._bridge is not None:
            self._bridge.close()
        if self._channel is not None:
            self._channel.close()
        self._pump.close()
        self.view.unpin()  # its processes are gone (or counted as left over): let it go
        events = self._cgroup.events()
        memory_kills = self.memory_kills()
        self._kmsg.close()
        self._cgroup.remove()
        release(self._cgroup.name, self._held)
        self._held = None
        keep = self.config.keep == "always" or (self.config.keep == "on_failure" and failed)
        if self.small_disk is not None:
            self.small_disk.release(keep)
        self.release_areas(keep)
        if not keep:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        self.teardown_report = {"processes_killed": before, "leftover": len(left),
                                "seconds": round(time.monotonic() - t, 4),
                                "killed_by_limit": self._killed_reason,
                                "disk_bytes": self.disk_used(),
                                "kept_state": str(self.state_dir) if keep else None,
                                "cgroup_events": events, "memory_kills": memory_kills}
        return self.teardown_report

    # ----- looking inside (the process view) --------------------------------------------
    def pids(self) -> list[int]:
        return self.view.pids()

    def processes(self) -> list[ProcInfo]:
        return self.view.processes()

    def parent_chain(self, host_pid: int) -> list[ProcInfo]:
        return self.view.parent_chain(host_pid)

    def listening_ports(self) -> list[Listener]:
        return self.view.listening_ports()

    def contains(self, host_pid: int) -> bool:
        return self.view.contains(host_pid)

    # ----- acting inside (through init) -------------------------------------------------
    @property
    def channel(self) -> InitChannel:
        if self._channel is None:
            raise SandboxError("sandbox not started")
        return self._channel

    def new_socket(self, family: int, type: int, proto: int = 0) -> int:  # noqa: A002
        """A socket made by init inside, so it belongs to the sandbox's network namespace."""
        return self.channel.new_socket(family, type, proto)

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
        host = self.view.host_pid(ns_pid)
        if host is None:
            st = self.channel.status(ns_pid)
            raise SandboxError(f"{argv[0]} exited at once with code {st['returncode']}")
        return host

    def _output_pipe(self, path: Path | None) -> int:
        """The write end of a pipe whose output the pump copies to `path` (None: dropped)."""
        r, w = os.pipe()
        try:
            # unbuffered: a write lands or fails at once (a full disk loses output, not
            # the pump)
            self._pump.add(r, open(path, "ab", buffering=0) if path is not None else None)
        except OSError:
            os.close(w)
            raise
        return w

    def _spawn(self, argv: list[str], cwd: str | None, env: dict[str, str] | None,
               fds: dict[str, int]) -> int:
        return self.channel.spawn(argv, cwd or self.config.workdir, env or self.default_env(),
                                  fds)

    def default_env(self) -> dict[str, str]:
        path = SYSTEM_PATH
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
            threading.Thread(target=feed, args=(in_w, data), daemon=True).start()
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
            read_some(outs, eof, nap)
            st = self.channel.status(ns_pid)
            if not st["running"]:
                rc = st["returncode"] if st["returncode"] is not None else -1
                break
            nap = min(nap * 2, 0.02)  # short commands answer fast, long ones poll gently
        if rc is None:
            self.kill([self.view.host_pid(ns_pid, tries=5) or -1], signal.SIGKILL)
            rc = -9
        read_some(outs, eof, 0)  # what it wrote before it exited is in the pipes now
        for fd in outs:  # a child it left running may still write: count and drop that
            self._pump.add(fd, None)
        stdout, stderr = (bytes(b).decode(errors="replace") for b in outs.values())
        if rc == -9 and time.monotonic() >= deadline:
            raise subprocess.TimeoutExpired(argv, timeout, stdout, stderr)
        return subprocess.CompletedProcess(argv, rc, stdout, stderr)

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
        if self._bridge is None:
            if not self.view.pid1:
                raise SandboxError("sandbox not started")
            self._bridge = NetBridge(self.view.pid1, self.config.net_access, self.new_socket,
                                     name=f"sb-net-{self.id}")
        return self._bridge.call(fn, *args, **kw)


def du(path: Path) -> int:
    """Bytes allocated under path (links not followed)."""
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
