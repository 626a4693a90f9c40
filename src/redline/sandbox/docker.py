"""Optional Docker backend behind the same interface (`SandboxConfig(backend="docker")`).

UNTESTED against a real engine: the machine this was written on has no Docker daemon. What is
tested is the `docker run` command line it generates. The design keeps everything else shared
with the bubblewrap backend: the same init (connecting to a Unix socket bound into the container
instead of an inherited one), and the same host-side view through /proc (the container's
PID 1 from `docker inspect`), so processes(), listening_ports(), netns_call() and kill() work
unchanged when the harness runs as root on the Docker host.

Leak-proofing differs: the container belongs to the daemon, not to the harness, so
--die-with-parent has no equivalent. Instead init exits when the harness's end of the control
socket closes (which the kernel does when the harness dies, even by SIGKILL); init is the
container's main process under `--init` (tini), so the container stops and `--rm` removes it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from redline.sandbox.base import INIT, SandboxBase
from redline.sandbox.channel import InitChannel
from redline.sandbox.config import PYTHON_ENV, SandboxConfig
from redline.sandbox.errors import SandboxError
from redline.sandbox.launcher import LAUNCHER
from redline.sandbox.procfs import ns_inode

CTL = "/run/redline-ctl"  # inside: init.py and the control socket


def docker_run_args(cfg: SandboxConfig, state_dir: Path, name: str, ctl_dir: Path,
                    docker: str = "docker", python: str | None = None) -> list[str]:
    """The `docker run` command for one sandbox (same isolation and limits as bubblewrap's)."""
    python = python or sys.executable
    args = [docker, "run", "--rm", "--name", name, "--hostname", cfg.hostname,
            "--network", "none", "--ipc", "private", "--init",
            "--read-only", "--tmpfs", "/run", "--tmpfs", "/var/tmp",
            "--security-opt", "no-new-privileges",
            "-v", f"{state_dir / 'home'}:{cfg.home}:rw",
            "-v", f"{state_dir / 'tmp'}:/tmp:rw",
            "-v", f"{ctl_dir}:{CTL}:rw"]
    for path in _python_paths():
        args += ["-v", f"{path}:{path}:ro"]
    if cfg.python_env_writable:
        raise SandboxError("python_env_writable needs the bubblewrap backend (an overlay)")
    if cfg.python_env:
        args += ["-v", f"{cfg.python_env}:{PYTHON_ENV}:ro"]
    for host, inner in cfg.extra_ro_binds:
        args += ["-v", f"{host}:{inner}:ro"]
    if cfg.memory_mb:
        args += ["--memory", f"{cfg.memory_mb}m", "--memory-swap", f"{cfg.memory_mb}m"]
    if cfg.pids_max:
        args += ["--pids-limit", str(cfg.pids_max)]
    if cfg.cpus:
        args += ["--cpus", str(cfg.cpus)]
    if cfg.gpu:
        args += ["--gpus", "all"]
    env = {"HOME": cfg.home, "LANG": "C.UTF-8", **cfg.env}
    for key, value in env.items():
        args += ["-e", f"{key}={value}"]
    args += ["-w", cfg.home, cfg.docker_image, python, "-S", f"{CTL}/init.py", f"{CTL}/ctl.sock"]
    return args


class DockerSandbox(SandboxBase):
    """A sandbox as a Docker container (untested here: no engine). Needs root on the host."""

    backend = "docker"

    def _boot(self) -> None:
        docker = shutil.which("docker")
        if not docker:
            raise SandboxError("docker backend: no `docker` command on PATH")
        self._ctl = Path(tempfile.mkdtemp(prefix="rl-ctl-"))  # short: socket paths < 108 bytes
        shutil.copy(INIT, self._ctl / "init.py")
        self._name = f"redline-{self.id}"
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        srv.bind(str(self._ctl / "ctl.sock"))
        srv.listen(1)
        srv.settimeout(0.05)
        argv = docker_run_args(self.config, self.state_dir, self._name, self._ctl, docker)
        log_path = self.state_dir / "docker.log"
        with open(log_path, "wb") as log_fh:
            self._proc = LAUNCHER.popen(argv, stdin=subprocess.DEVNULL, stdout=log_fh,
                                        stderr=log_fh)
        try:
            sock = self._accept(srv, deadline=time.monotonic() + 300)  # image pulls
        finally:
            srv.close()
        if sock is None:
            raise SandboxError("container did not start: " +
                               log_path.read_text(errors="replace")[-800:])
        sock.settimeout(None)
        self._channel = InitChannel(sock, lambda: self._killed_reason)
        out = subprocess.run([docker, "inspect", "-f", "{{.State.Pid}}", self._name],
                             capture_output=True, text=True, timeout=30)
        try:
            pid1 = int(out.stdout.strip())
        except ValueError as exc:
            raise SandboxError(f"docker inspect failed: {out.stderr.strip()}") from exc
        self.view.pid1, self.view.pidns = pid1, ns_inode(pid1, "pid")
        init = self.view.host_pid(int(self._channel.request({"op": "ping"})["pid"]))
        self.view.root_pids = {self._proc.pid, pid1, *([init] if init else [])}

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
        name = getattr(self, "_name", None)
        docker = shutil.which("docker")
        if name and docker:
            subprocess.run([docker, "rm", "-f", name], capture_output=True, timeout=30)
        ctl = getattr(self, "_ctl", None)
        if ctl is not None:
            shutil.rmtree(ctl, ignore_errors=True)

    def _limits_report(self) -> dict[str, Any]:
        rep = super()._limits_report()
        cfg = self.config
        for key, flag, want in (("memory", "--memory/--memory-swap", cfg.memory_mb),
                                ("pids", "--pids-limit", cfg.pids_max),
                                ("cpu", "--cpus", cfg.cpus)):
            if want:
                rep[key] = {"applied": True, "limit": str(want), "how": f"docker run {flag}"}
        if self.hidden_tools:
            rep["hidden_tools"] = {"applied": False, "reason": "the docker backend cannot hide "
                                   "tools; use an image without them"}
        return rep


def _python_paths() -> list[str]:
    """The harness's Python environment (venv and base interpreter), bound read-only: the
    image need not have Python (init runs on the harness's interpreter)."""
    paths = {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}
    return sorted(p for p in paths if not p.startswith(("/usr", "/etc")))
