"""Host-side facts about processes inside the sandbox: code hashes, weights, connections."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import psutil

from redline.sandbox.sandbox import tcp_table


def inner_file(host_pid: int, inner_path: str) -> Path:
    """A path as the sandboxed process sees it, reached from the host through /proc/PID/root."""
    return Path(f"/proc/{host_pid}/root") / inner_path.lstrip("/")


def agent_folder(host_pid: int, cmdline: list[str], cwd: str | None) -> str | None:
    """The folder of the script a `python [opts] script.py ...` process runs (inner path)."""
    args = list(cmdline[1:])
    while args and args[0].startswith("-"):
        if args[0] in ("-m", "-c"):
            return cwd
        args.pop(0)
    if not args:
        return cwd
    script = args[0]
    if not script.startswith("/"):
        script = os.path.normpath(os.path.join(cwd or "/", script))
    return os.path.dirname(script)


def code_hashes(host_pid: int, folder: str) -> dict[str, str]:
    """sha256 of the agent program (start.py and src/**/*.py) in `folder`, read via /proc."""
    root = inner_file(host_pid, folder)
    out: dict[str, str] = {}
    try:
        files = [root / "start.py", *sorted((root / "src").rglob("*.py"))]
        for f in files:
            if f.is_file():
                out[str(f.relative_to(root))] = hashlib.sha256(f.read_bytes()).hexdigest()
    except OSError:
        pass
    return out


def weights_in_use(host_pid: int) -> list[str]:
    """Weight files a server has open or mapped (gguf/safetensors/yaml), as inner paths."""
    found: set[str] = set()
    try:
        with open(f"/proc/{host_pid}/maps") as fh:
            for line in fh:
                path = line.split(maxsplit=5)[-1].strip() if len(line.split()) >= 6 else ""
                if path.endswith((".gguf", ".safetensors", ".bin")):
                    found.add(path)
    except OSError:
        pass
    try:
        cmd = psutil.Process(host_pid).cmdline()
        for i, arg in enumerate(cmd):
            if arg in ("--weights", "--model", "-m") and i + 1 < len(cmd):
                found.add(cmd[i + 1])
            elif arg == "serve" and i + 1 < len(cmd):
                found.add(cmd[i + 1])
    except psutil.Error:
        pass
    return sorted(found)


def tree_pids(host_pid: int) -> list[int]:
    try:
        proc = psutil.Process(host_pid)
        return [host_pid] + [c.pid for c in proc.children(recursive=True)]
    except psutil.Error:
        return [host_pid]


def connected_ports(host_pid: int) -> list[int]:
    """Remote loopback ports the process tree has TCP connections to (its brain, for an agent)."""
    ports: set[int] = set()
    for pid in tree_pids(host_pid):
        try:
            for conn in psutil.Process(pid).net_connections(kind="tcp"):
                if conn.raddr and conn.status in ("ESTABLISHED", "CLOSE_WAIT", "SYN_SENT"):
                    ports.add(conn.raddr.port)
        except psutil.Error:
            continue
    return sorted(ports)


def ancestry(host_pid: int, stop: set[int]) -> list[dict[str, Any]]:
    """Parent chain of a process up to (not including) the sandbox init: who started whom."""
    chain = []
    try:
        proc = psutil.Process(host_pid).parent()
        while proc is not None and proc.pid not in stop and len(chain) < 32:
            chain.append({"pid": proc.pid, "cmdline": proc.cmdline()})
            proc = proc.parent()
    except psutil.Error:
        pass
    return chain


def netns_sockets(host_pid: int) -> set[tuple[int, int, str]]:
    """(local port, remote port, state) of every TCP socket in `host_pid`'s network namespace:
    a greeting that reached an LLM server leaves a socket here, even a closed one."""
    return {(s.local_port, s.remote_port, s.state) for s in tcp_table(host_pid)}
