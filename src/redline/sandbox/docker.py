"""The Docker backend (`SandboxConfig(backend="docker")`): the sandbox as a container of a
local Docker engine, with the same init, limits, process view and network bridge as the
bubblewrap backend, so the judge and the scenarios cannot tell them apart.

What the container is made of, and why:
- the image is only mount points (`ensure_image`: `docker import` of a root filesystem made
  here, no registry); the machine's `/usr` and `/etc` are bound read-only over it, as
  bubblewrap binds them, and the AI system's own environment at /opt/venv;
- init runs on the machine's own Python (`system_python()`, `-I -S`), as PID 1 of the
  container (no `docker-init`), never on the harness's interpreter or environment;
- `--network none` (only `lo`), `--cap-drop ALL` but NET_BIND_SERVICE, `no-new-privileges`,
  the seccomp policy of `seccomp.py` as a profile, a private cgroup namespace, read-only root;
- limits are the same cgroups as bubblewrap's (`Cgroup`), made by the harness and handed to
  Docker as `--cgroup-parent`, so the report and the events read after an OOM are the same.

Leak-proofing differs: the container belongs to the daemon, so there is no
--die-with-parent. Instead init exits when the harness's end of its control socket closes
(the kernel closes it when the harness dies, even by SIGKILL); init is PID 1, so its exit ends
every process inside, and `--rm` removes the container. Teardown SIGKILLs PID 1 and runs
`docker rm -f`. The harness must run as root on the Docker host (it reads the container's
processes from the host's /proc).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import stat
import struct
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from redline.sandbox import seccomp
from redline.sandbox.base import INIT, SandboxBase
from redline.sandbox.bwrap import gpu_args
from redline.sandbox.cgroups import Cgroup
from redline.sandbox.channel import InitChannel
from redline.sandbox.config import (
    DOCKER_IMAGE,
    PYTHON_ENV,
    SYSTEM_PATH,
    SandboxConfig,
    system_python,
)
from redline.sandbox.errors import SandboxError
from redline.sandbox.hostroot import neutral_root, staged
from redline.sandbox.launcher import LAUNCHER
from redline.sandbox.procfs import ns_inode
from redline.sandbox.shadow import shadow_args

CTL = "/run/initctl"  # inside: init's control socket (an ordinary init's name for it)
TOPS = ("/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
MOUNT_POINTS = ("usr", "etc", "proc", "dev", "sys", "tmp", "root", "run", "opt/venv",
                "var/tmp")


def rootfs_tar() -> bytes:
    """A root filesystem of empty mount points, with the machine's top-level links (`/bin ->
    usr/bin` on a merged-/usr system) or folders to bind its own over."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add(name: str, kind: bytes = tarfile.DIRTYPE, target: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mtime = kind, target, int(time.time())
            info.mode = 0o1777 if name in ("tmp", "var/tmp") else 0o755
            tar.addfile(info)

        for name in MOUNT_POINTS:
            if "/" in name:
                add(name.rsplit("/", 1)[0])
            add(name)
        for top in TOPS:
            if os.path.islink(top):
                add(top.lstrip("/"), tarfile.SYMTYPE, os.readlink(top))
            elif os.path.isdir(top):
                add(top.lstrip("/"))
    return buf.getvalue()


_HAVE_IMAGE: set[tuple[str, str, str]] = set()  # (docker, engine, image) known to be there


def ensure_image(docker: str, image: str = DOCKER_IMAGE) -> None:
    """Build the mount-point image once per engine (about 0.1 s); a named image of the user's
    own is left to the engine. Checked once per process and engine."""
    key = (docker, os.environ.get("DOCKER_HOST", ""), image)
    if key in _HAVE_IMAGE:
        return
    have = subprocess.run([docker, "image", "inspect", image], capture_output=True,
                          timeout=60)
    if have.returncode != 0 and image == DOCKER_IMAGE:
        made = subprocess.run([docker, "import", "-", image], input=rootfs_tar(),
                              capture_output=True, timeout=120)
        if made.returncode != 0:
            raise SandboxError(f"docker import of the base image failed: "
                               f"{made.stderr.decode(errors='replace').strip()[-400:]}")
    if have.returncode == 0 or image == DOCKER_IMAGE:
        _HAVE_IMAGE.add(key)


def bwrap_to_docker(args: list[str]) -> list[str]:
    """bubblewrap bind arguments (`--ro-bind SRC DST`, `--dev-bind SRC DST`) as `docker run`
    ones, so hidden tools and GPU pass-through are made by the same code for both backends.
    Binds into /proc are left out: runc refuses them."""
    out: list[str] = []
    for i in range(0, len(args) - 2, 3):
        flag, src, dst = args[i:i + 3]
        if dst.startswith("/proc/"):
            continue
        if flag == "--dev-bind" and stat.S_ISCHR(os.stat(src).st_mode):
            out += ["--device", f"{src}:{dst}"]
        elif flag == "--dev-bind":  # a GPU inventory's stand-in node: a plain file
            out += bind(src, dst, ro=False)
        elif flag in ("--ro-bind", "--ro-bind-try"):
            out += bind(src, dst)
        else:
            raise ValueError(f"no docker equivalent for bubblewrap's {flag}")
    return out


def bind(src: str | Path, dst: str, ro: bool = True) -> list[str]:
    """A bind mount whose source must exist (`-v` would make a missing one on the host)."""
    return ["--mount", f"type=bind,source={src},target={dst}" + (",readonly" if ro else "")]


SYSTEMD_PARENT = "redline.slice"  # the systemd cgroup driver takes only a slice


def cgroup_driver(docker: str) -> str:
    """The engine's cgroup driver: `cgroupfs` takes a path as the parent (our own cgroup, its
    limits set by us), `systemd` only a slice (`name.slice`; the limits then as flags)."""
    try:
        out = subprocess.run([docker, "info", "--format", "{{.CgroupDriver}}"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "cgroupfs"
    return "systemd" if out.stdout.strip() == "systemd" else "cgroupfs"


def docker_run_args(cfg: SandboxConfig, state_dir: Path, name: str, ctl_sock: Path,
                    profile: Path, cgroup_parent: str | None = None, docker: str = "docker",
                    hidden_tools: list[str] | None = None,
                    limit_flags: bool = False) -> list[str]:
    """The `docker run` command for one sandbox (same isolation as bubblewrap's).
    `limit_flags`: the limits as docker's own flags (the systemd cgroup driver, where the
    parent cannot be a cgroup of ours that holds them)."""
    if cfg.python_env_writable:
        raise SandboxError("python_env_writable needs the bubblewrap backend (an overlay)")
    args = [docker, "run", "--rm", "--pull", "never",  # local images only: no registry
            "--name", name, "--hostname", cfg.hostname,
            "--network", "none", "--ipc", "private", "--cgroupns", "private",
            "--read-only", "--tmpfs", "/run:rw,exec,mode=755",
            "--tmpfs", "/var/tmp:rw,exec,mode=1777", "--log-driver", "none",
            "--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE",
            "--security-opt", "no-new-privileges", "--security-opt", f"seccomp={profile}",
            *bind("/usr", "/usr"), *bind("/etc", "/etc")]
    for top in TOPS:
        if os.path.isdir(top) and not os.path.islink(top):
            args += bind(top, top)
    # Resolved: while it runs, home and tmp are links into the neutral store (or a small
    # disk); every source names nothing, as for bubblewrap (redline.sandbox.hostroot).
    args += [*bind((state_dir / "home").resolve(), cfg.home, ro=False),
             *bind((state_dir / "tmp").resolve(), "/tmp", ro=False),
             *bind(ctl_sock, CTL, ro=False)]
    if cfg.python_env:
        args += bind(staged(cfg.python_env), PYTHON_ENV)
    if hidden_tools or cfg.tools:
        args += bwrap_to_docker(shadow_args(hidden_tools or [], added=cfg.tools))
    for host, inner in cfg.extra_ro_binds:
        args += bind(staged(host), inner)
    for host, inner in cfg.weights_binds:
        args += bind(host, inner)
    args += bwrap_to_docker(gpu_args(cfg.devices))
    # tensor-parallel workers exchange through /dev/shm (64 MiB by default in Docker)
    args += ["--shm-size", f"{cfg.shm_mb or 64}m"]
    if cgroup_parent:
        args += ["--cgroup-parent", cgroup_parent]
    if limit_flags:
        if cfg.memory_mb:
            args += ["--memory", f"{cfg.memory_mb}m", "--memory-swap", f"{cfg.memory_mb}m"]
        if cfg.pids_max:
            args += ["--pids-limit", str(cfg.pids_max)]
        if cfg.cpus:
            args += ["--cpus", str(cfg.cpus)]
    for key, value in {"PATH": SYSTEM_PATH, "HOME": cfg.home, "LANG": "C.UTF-8"}.items():
        args += ["-e", f"{key}={value}"]
    args += ["-w", cfg.home, cfg.docker_image,
             system_python(), "-I", "-S", "-c", INIT.read_text(), CTL]
    return args


class DockerSandbox(SandboxBase):
    """A sandbox as a Docker container. Needs root on the Docker host."""

    backend = "docker"
    _ctl: Path | None = None
    _name: str | None = None

    def _boot(self) -> None:
        docker = shutil.which("docker")
        if not docker:
            raise SandboxError("docker backend: no `docker` command on PATH")
        self._docker = docker
        ensure_image(docker, self.config.docker_image)
        # init's socket, bound in: its host path (which mountinfo shows) names nothing, and
        # is short (a socket path has < 108 bytes). In the sandbox's store where it has one,
        # so a harness that dies leaves nothing the store's sweep does not remove.
        if self.store is not None:
            self._ctl = self.store / "run"
            self._ctl.mkdir(mode=0o700)
        else:
            root = neutral_root()
            self._ctl = Path(tempfile.mkdtemp(prefix="run.", dir=root and str(root)))
        sock_path = self._ctl / "initctl"
        profile = self._ctl / "seccomp.json"
        profile.write_text(json.dumps(seccomp.docker_profile()))
        self._name = f"redline-{self.id}"  # the host's name for it; nothing inside shows it
        driver = cgroup_driver(docker)
        if driver == "systemd":  # a parent must be a slice; the limits go as docker's flags
            parent: str | None = SYSTEMD_PARENT
        else:  # our own cgroup, with its limits, is the container's parent (cgroupfs)
            self._cgroup.apply(self.config.memory_mb, self.config.pids_max, self.config.cpus)
            parent = f"/redline/{self._cgroup.name}" if self._cgroup.paths else None
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        srv.bind(str(sock_path))
        srv.listen(1)
        srv.settimeout(0.05)
        argv = docker_run_args(self.config, self.state_dir, self._name, sock_path, profile,
                               parent, docker, self.hidden_tools,
                               limit_flags=driver == "systemd")
        log_path = self._ctl / "docker.log"  # the client's own messages (init says nothing)
        with open(log_path, "wb") as log_fh:
            self._proc = LAUNCHER.popen(argv, stdin=subprocess.DEVNULL, stdout=log_fh,
                                        stderr=log_fh)
        try:
            sock = self._accept(srv, deadline=time.monotonic() + 60)
        finally:
            srv.close()  # nothing else can connect now
        if sock is None:
            raise SandboxError("container did not start: " +
                               (log_path.read_text(errors="replace")[-800:] or "no output"))
        sock.settimeout(None)
        self._channel = InitChannel(sock, lambda: self._killed_reason)
        # init's host PID, from the kernel (the peer of its socket), not from the engine
        pid1 = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                   struct.calcsize("3i")))[0]
        try:
            self.view.pin(pid1)
        except OSError as exc:  # init connected and died at once
            raise SandboxError("the container's init exited as it started: " +
                               (log_path.read_text(errors="replace")[-800:] or "no output")) \
                from exc
        self.view.root_pids = {self._proc.pid, pid1}
        if self._channel.request({"op": "ping"}).get("pid") != 1 or \
                self.view.pidns == ns_inode(os.getpid(), "pid"):
            raise SandboxError("the container's PID 1 is not the sandbox's init")

    def _accept(self, srv: socket.socket, deadline: float) -> socket.socket | None:
        """Wait for init to connect, giving up at once if `docker run` has already failed."""
        while time.monotonic() < deadline:
            try:
                return srv.accept()[0]
            except TimeoutError:
                if self._proc is not None and self._proc.poll() is not None:
                    return None
        return None

    def _kill_pid1(self) -> None:
        """SIGKILL PID 1 (everything inside dies with it, at once), then have the engine
        remove the container (a no-op when `--rm` was first)."""
        super()._kill_pid1()
        if self._name:
            subprocess.run([self._docker, "rm", "-f", self._name], capture_output=True,
                           timeout=60)

    def teardown(self, failed: bool = False) -> dict[str, Any]:
        # The kernel counts an OOM kill in the container's own cgroup (below ours), which the
        # engine removes with the container: read it first.
        inner = Cgroup(self._cgroup.name)
        inner.paths = {ctrl: child for ctrl, path in self._cgroup.paths.items()
                       for child in path.glob("*/") if child.is_dir()}
        events = inner.events() if self.teardown_report is None else {}
        report = super().teardown(failed)
        report["cgroup_events"].update(events)
        if self._ctl is not None:
            shutil.rmtree(self._ctl, ignore_errors=True)
            self._ctl = None
        return report
