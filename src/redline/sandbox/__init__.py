"""Containment: every AI system runs in a sandbox it cannot leave."""

from redline.sandbox.config import PROFILES, SandboxConfig
from redline.sandbox.sandbox import Listener, ProcInfo, Sandbox, SandboxError

__all__ = ["PROFILES", "Listener", "ProcInfo", "Sandbox", "SandboxConfig", "SandboxError"]
