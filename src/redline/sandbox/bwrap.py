"""The bubblewrap backend: only loopback, its own PID view, a read-only system, writable home
and /tmp kept under the trial's folder, cgroup limits, a seccomp filter.

Leak-proofing rests on the kernel: the sandbox's init is PID 1 of its PID namespace and dies
with the harness (--die-with-parent); when PID 1 dies, every process inside is killed. PID 1
looks like an ordinary init and is off limits to everything else inside (docs/sandbox.md).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from pathlib import Path

from redline.sandbox import seccomp
from redline.sandbox.base import INIT, SandboxBase
from redline.sandbox.channel import InitChannel
from redline.sandbox.config import (
    PYTHON_ENV,
    SYSTEM_PATH,
    SandboxConfig,
    find_bwrap,
    system_python,
)
from redline.sandbox.errors import SandboxError
from redline.sandbox.hostroot import staged
from redline.sandbox.launcher import LAUNCHER
from redline.sandbox.shadow import shadow_args


class BwrapSandbox(SandboxBase):
    """A sandbox made with bubblewrap alone (no daemon)."""

    backend = "bubblewrap"

    def __init__(self, config: SandboxConfig | None = None, state_dir: Path | None = None) -> None:
        super().__init__(config, state_dir)
        self._bwrap_err = bytearray()  # bubblewrap's own stderr, its last 8 KiB
        self._err_done = threading.Event()

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
                 "--bind", str(self.area("home")), cfg.home,
                 "--bind", str(self.area("tmp")), "/tmp"]
        # Every bind source under the neutral folder: mountinfo inside shows its host path
        # (and an overlay its lower folder), which must name nothing (hostroot.py).
        if cfg.python_env and cfg.python_env_writable:
            args += ["--overlay-src", str(staged(cfg.python_env)), "--tmp-overlay", PYTHON_ENV]
        elif cfg.python_env:
            args += ["--ro-bind", str(staged(cfg.python_env)), PYTHON_ENV]
        # CPU topology only (thread-count heuristics read it); no /sys/class/net, so the host's
        # interface names stay out of view.
        args += ["--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]
        if self.hidden_tools or cfg.tools:
            args += shadow_args(self.hidden_tools, added=cfg.tools)
        for host, inner in cfg.extra_ro_binds:
            args += ["--ro-bind", str(staged(host)), str(inner)]
        for host, inner in cfg.weights_binds:  # after home: on top of the folder's mount point
            args += ["--ro-bind", str(host), str(inner)]
        args += gpu_args(cfg.devices)
        if cfg.shm_mb:
            args += ["--size", str(cfg.shm_mb << 20), "--tmpfs", "/dev/shm"]
        args += ["--chdir", cfg.home]
        return args

    def _boot(self) -> None:
        """bubblewrap up with init as PID 1 (`--as-pid-1`: no bubblewrap inside), the seccomp
        filter loaded; init moved into the cgroup before the harness can ask it for anything."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._channel = InitChannel(parent, lambda: self._killed_reason)
        info_r, info_w = os.pipe()
        err_r, err_w = os.pipe()
        filt = seccomp.program_fd()
        argv = self.bwrap_args() + ["--seccomp", str(filt), "--info-fd", str(info_w), "--",
                                    system_python(), "-I", "-S", "-c", INIT.read_text(),
                                    str(child.fileno())]
        env = {"PATH": SYSTEM_PATH,
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
        threading.Thread(target=self._read_bwrap_err, args=(err_r,), daemon=True,
                         name=f"sb-err-{self.id}").start()
        with os.fdopen(info_r) as fh:
            info = fh.read()
        try:
            pid1 = int(json.loads(info)["child-pid"])
        except (ValueError, KeyError) as exc:
            self._proc.wait(5)
            raise SandboxError("bubblewrap failed to start: " + self._bwrap_log()) from exc
        try:
            self.view.pin(pid1)
        except OSError as exc:  # PID 1 already gone: bubblewrap failed after its fork
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            raise SandboxError(f"sandbox init did not start: {self._bwrap_log()}") from exc
        self.view.root_pids = {self._proc.pid, pid1}
        self._cgroup.add(pid1)  # already there; a failure to move is reported here
        try:
            self._channel.request({"op": "ping"})  # ready means init answers
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


def _join(procs: list[str]) -> None:
    """In the forked child, before exec: move this process into the sandbox's cgroups."""
    for path in procs:
        try:
            with open(path, "w") as fh:
                fh.write(str(os.getpid()))
        except OSError:
            pass  # reported by Cgroup.add after the start


def gpu_args(devices: list[tuple[str, str]]) -> list[str]:
    """A GPU trial's device nodes (redline.sandbox.gpus.device_binds), and the driver's
    /proc entries where there are any. Nothing under /usr (it is bound whole already; a bind
    onto one of its symbolic links, such as /usr/local/cuda, is refused by bubblewrap)."""
    if not devices:
        return []
    args: list[str] = []
    for host, inner in devices:
        args += ["--dev-bind", os.path.realpath(host), inner]
    if os.path.isdir("/proc/driver/nvidia") and not os.path.islink("/proc/driver/nvidia"):
        args += ["--ro-bind", "/proc/driver/nvidia", "/proc/driver/nvidia"]
    return args
