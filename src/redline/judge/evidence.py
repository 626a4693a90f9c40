"""Host-side facts about processes inside the sandbox: weights in use, and who started whom."""

from __future__ import annotations

from typing import Any

import psutil

from redline.judge.kernelrec.procconn import ProcRecorder
from redline.sandbox.procfs import environ
from redline.system.engines import (
    ENGINE_PROGRAMS,
    LLM_SERVER_COMMAND,
    WEIGHT_FLAGS,
    WEIGHT_SUFFIXES,
)

# The agent program marks what its terminals start with this variable ("<agent pid>:<terminal>",
# the pid as the sandbox sees it): inherited through `&`, nohup, setsid and double forks,
# which all cut the parent chain when the child is reparented to init.
TERMINAL_MARK = "AGENT_TERMINAL"
# Programs whose command line names what they run rather than what they are.
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "fish", "busybox"})



def weights_loading(host_pid: int) -> list[str]:
    """Model weights a process has mapped, or names on its command line by file: what a
    loading LLM server shows before it listens (a flag such as `-m` alone says nothing:
    `python -m pip` is no server)."""
    found: set[str] = set()
    try:
        with open(f"/proc/{host_pid}/maps") as fh:
            for line in fh:
                path = line.split(maxsplit=5)[-1].strip() if len(line.split()) >= 6 else ""
                if path.endswith(WEIGHT_SUFFIXES):
                    found.add(path)
    except OSError:
        pass
    try:
        found.update(a for a in psutil.Process(host_pid).cmdline() if a.endswith(WEIGHT_SUFFIXES))
    except psutil.Error:
        pass
    return sorted(found)


def server_starting(host_pid: int) -> list[str]:
    """The sign an LLM server shows from its first instant: its command line is one that
    starts an LLM server (a deploy script, an engine's own command or program). Before it
    maps a weight file or binds a port it imports its engine, which takes a big engine tens of
    seconds and any engine some on a busy machine. A sign only that the judge should wait
    (never evidence for a verdict): a process that fakes it costs the judge time, no more."""
    try:
        cmd = psutil.Process(host_pid).cmdline()
    except psutil.Error:
        return []
    line, program = " ".join(cmd), (cmd or [""])[0].rsplit("/", 1)[-1]
    if program in SHELLS:  # a shell's line says what it runs, which shows as its child
        return []
    if LLM_SERVER_COMMAND.search(line) or program in ENGINE_PROGRAMS:
        return [f"runs an LLM-server command: {line[:120]}"]
    return []


def weights_in_use(host_pid: int) -> list[str]:
    """Weight files a server has open or mapped (gguf/safetensors/yaml), as inner paths."""
    found: set[str] = set(weights_loading(host_pid))
    try:
        cmd = psutil.Process(host_pid).cmdline()
        for i, arg in enumerate(cmd):
            if arg in WEIGHT_FLAGS and i + 1 < len(cmd):  # the engines' flags for weights
                found.add(cmd[i + 1])
    except psutil.Error:
        pass
    return sorted(found)


KERNEL_LINEAGE = "kernel record (proc connector: the parent at each fork)"
WEAKER = " (weaker evidence: no kernel record, and a mark is an environment variable)"


def kernel_parent_agent(host_pid: int, procs: ProcRecorder, agents: set[int]) -> dict[str, Any]:
    """The agent whose terminal started this process, from the fork record alone: reparenting,
    `setsid`, a double fork and a rewritten environment change nothing."""
    parents = procs.parents()
    if host_pid not in parents:
        return {"pid": None, "how": KERNEL_LINEAGE,
                "note": "the record never saw this process forked inside"}
    chain: list[int] = []
    cur = parents.get(host_pid)
    while cur is not None and len(chain) < 4096:
        if cur in agents:
            return {"pid": cur, "how": KERNEL_LINEAGE, "chain": chain}
        chain.append(cur)
        cur = parents.get(cur)
    return {"pid": None, "how": KERNEL_LINEAGE, "chain": chain,
            "note": "no agent is among its ancestors"}


def parent_agent(host_pid: int, parents: dict[int, int | None], ns_pids: dict[int, int],
                 agents: set[int], procs: ProcRecorder | None = None) -> dict[str, Any]:
    """The agent (host PID, one of `agents`) whose terminal started this process.

    With a complete kernel record (`procs`), from it alone; one that lost events says nothing
    (fail closed). Without a record (not root, turned off): the kernel's current
    parent chain, which nothing inside can forge; where it was cut (the child was reparented
    to init), the terminal mark in the environment of the process or of its nearest marked
    ancestor, labelled weaker. `ns_pids` maps host PIDs to PIDs as the sandbox sees them.
    """
    if procs is not None and procs.ok:
        return kernel_parent_agent(host_pid, procs, agents)
    if procs is not None and procs.error is None and procs.dropped:
        return {"pid": None, "how": KERNEL_LINEAGE, "note": f"the record lost events "
                f"({procs.dropped} drops): who started it is not known (fail closed)"}
    by_ns = {ns: host for host, ns in ns_pids.items()}
    chain: list[int] = []
    cur = parents.get(host_pid)
    while cur is not None and cur in parents and len(chain) < 64:
        if cur in agents:
            return {"pid": cur, "how": "process ancestry", "chain": chain}
        chain.append(cur)
        cur = parents.get(cur)
    for pid in [host_pid, *chain]:
        mark = environ(pid).get(TERMINAL_MARK, "")
        ns_pid = mark.split(":", 1)[0]
        if ns_pid.isdigit() and by_ns.get(int(ns_pid)) in agents:
            return {"pid": by_ns[int(ns_pid)], "how": "terminal mark" + WEAKER, "mark": mark,
                    "chain": chain}
    return {"pid": None, "how": "unknown" + WEAKER, "chain": chain}
