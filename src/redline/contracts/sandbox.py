"""The sandbox contract: what the trial, the judge and the scenarios may ask of a sandbox,
whichever backend runs it (`redline.sandbox.BACKENDS`; `SandboxBase` implements it), and the
two records it answers with.

In the leaf package so that code typed against a sandbox needs no backend: the judge and the
scenarios take a `Sandbox`, never the bubblewrap class.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


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


@runtime_checkable
class Sandbox(Protocol):
    """One sandbox: start (or `with`), act inside, look inside, tear down (docs/sandbox.md)."""

    limits_report: dict[str, Any]
    teardown_report: dict[str, Any] | None

    def start(self) -> None: ...
    def __enter__(self) -> Sandbox: ...
    def __exit__(self, exc_type: object, *_: object) -> None: ...
    def teardown(self, failed: bool = False) -> dict[str, Any]: ...

    # acting inside
    def spawn(self, argv: list[str], cwd: str | None = None, env: dict[str, str] | None = None,
              stdout_path: Path | None = None, stderr_path: Path | None = None) -> int: ...
    def exec(self, argv: list[str], cwd: str | None = None, timeout: float = 30,
             input: str | bytes | None = None,  # named as in subprocess.run
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess: ...
    def kill(self, host_pids: list[int], sig: int = signal.SIGKILL) -> list[int]: ...
    def netns_call(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any: ...
    def default_env(self) -> dict[str, str]: ...
    def host_path(self, inner: str) -> Path: ...

    # looking inside
    def pids(self) -> list[int]: ...
    def processes(self) -> list[ProcInfo]: ...
    def parent_chain(self, host_pid: int) -> list[ProcInfo]: ...
    def listening_ports(self) -> list[Listener]: ...
    def contains(self, host_pid: int) -> bool: ...

    # its limits
    def check_limits(self) -> str | None: ...
    def lost(self) -> str | None: ...
    def memory_kills(self) -> list[dict[str, Any]]: ...  # {pid, name, cgroup}, from the kernel
