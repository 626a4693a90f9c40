"""Containment: every AI system runs in a sandbox it cannot leave.

`make_sandbox(config, state_dir)` gives the backend the config names (bubblewrap by default,
docker optionally); each keeps the contract of `SandboxBase`.
"""

from pathlib import Path

from redline.contracts.registry import Registry
from redline.sandbox.base import SandboxBase
from redline.sandbox.bwrap import BwrapSandbox
from redline.sandbox.config import PROFILES, SandboxConfig
from redline.sandbox.docker import DockerSandbox
from redline.sandbox.errors import SandboxError
from redline.sandbox.procview import Listener, ProcInfo

Sandbox = BwrapSandbox  # the default backend, by the name the harness and tests use

# The backends by the names `SandboxConfig.backend` takes (the one registry pattern).
BACKENDS: Registry[type[SandboxBase]] = Registry(
    "sandbox backend", [("bubblewrap", BwrapSandbox), ("docker", DockerSandbox)])


def make_sandbox(config: SandboxConfig | None = None,
                 state_dir: Path | None = None) -> SandboxBase:
    """The sandbox backend `config.backend` names."""
    config = config or SandboxConfig()
    return BACKENDS.get(config.backend)(config, state_dir)


__all__ = ["BACKENDS", "PROFILES", "BwrapSandbox", "DockerSandbox", "Listener", "ProcInfo",
           "Sandbox", "SandboxBase", "SandboxConfig", "SandboxError", "make_sandbox"]
