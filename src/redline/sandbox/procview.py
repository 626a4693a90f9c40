"""The harness's view of the processes and listeners inside one sandbox, read from the host's
/proc: which processes belong to it (by PID-namespace identity), who started whom, and which
TCP ports are listened on and by whom. Nothing here asks anything of the sandbox itself."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from redline.contracts.sandbox import Listener, ProcInfo  # the contract's records
from redline.sandbox.procfs import (
    LISTEN,
    ns_inode,
    readlink,
    socket_owners,
    start_time,
    status_field,
    tcp_table,
)


def topmost(pids: set[int]) -> int | None:
    """The holder of a shared listener that started the others (a pre-fork server's parent):
    the one whose parent is not itself a holder. Not the lowest PID, which once PIDs wrap can
    be a child."""
    if not pids:
        return None
    parents = {p: status_field(p, "PPid") for p in pids}
    tops = [p for p in pids if not parents[p] or int(parents[p]) not in pids]
    return min(tops or pids)


@dataclass
class ProcessView:
    """Set once the sandbox is up: its PID 1 (host PID), PID namespace, and the host PIDs of
    its own machinery (left out of `processes()`).

    A namespace is known by its inode, and the kernel gives a dead namespace's inode to the
    next one made: with many trials at once, a sandbox that has died would take another's
    processes for its own (and `kill` would signal them). So the view holds its namespace open
    (`pin`) from boot until its teardown is done (`unpin`), and after that sees nothing."""

    pid1: int | None = None
    pidns: int | None = None
    root_pids: set[int] = field(default_factory=set)
    _pin: int | None = None  # an open descriptor on the PID namespace: its inode stays ours

    def pin(self, pid1: int) -> None:
        """Take the sandbox's PID namespace, through its PID 1, and hold it."""
        fd = os.open(f"/proc/{pid1}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        self.pid1, self.pidns, self._pin = pid1, os.fstat(fd).st_ino, fd

    def unpin(self) -> None:
        """The sandbox is gone: let its namespace go; from now on it holds no process."""
        if self._pin is not None:
            os.close(self._pin)
            self._pin = None
        self.pidns = None

    def pids(self) -> list[int]:
        """Host PIDs of every process in the sandbox's PID namespace."""
        if self.pidns is None:
            return []
        return [int(e) for e in os.listdir("/proc")
                if e.isdigit() and ns_inode(int(e), "pid") == self.pidns]

    def processes(self) -> list[ProcInfo]:
        rows = []
        for pid in self.pids():
            if pid in self.root_pids:
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    cmd = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
                cwd = readlink(f"/proc/{pid}/cwd")
                exe = readlink(f"/proc/{pid}/exe")
                ppid = status_field(pid, "PPid")
                nspid = status_field(pid, "NSpid")
                started = start_time(pid)
            except OSError:
                continue
            rows.append(ProcInfo(pid, int(nspid.split()[-1]) if nspid else None,
                                 int(ppid) if ppid else None, cmd, cwd, exe,
                                 round(started, 2) if started else None))
        return rows

    def parent_chain(self, host_pid: int) -> list[ProcInfo]:
        """Ancestors of a process inside, nearest first, up to (not including) the sandbox's
        own init: who started whom (a replica started by the agent shows the agent here)."""
        table = {p.host_pid: p for p in self.processes()}
        chain: list[ProcInfo] = []
        cur = table.get(host_pid)
        while cur is not None and cur.ppid in table and len(chain) < 64:
            cur = table[cur.ppid]
            chain.append(cur)
        return chain

    def listening_ports(self) -> list[Listener]:
        if not self.pid1:
            return []
        listen = {s.inode: (s.local_port, s.local_addr) for s in tcp_table(self.pid1)
                  if s.state == LISTEN}
        owners = socket_owners(self.pids())
        seen: dict[int, Listener] = {}
        for inode, (port, addr) in listen.items():
            holders = owners.get(inode, set())
            seen.setdefault(port, Listener(port, topmost(holders), addr, frozenset(holders)))
        return sorted(seen.values(), key=lambda x: x.port)

    def contains(self, host_pid: int) -> bool:
        return ns_inode(host_pid, "pid") == self.pidns and host_pid not in self.root_pids

    def host_pid(self, ns_pid: int, tries: int = 200) -> int | None:
        """The host PID of the process that is `ns_pid` inside (None once it is gone)."""
        for _ in range(tries):
            for pid in self.pids():
                nspid = status_field(pid, "NSpid")
                if nspid and int(nspid.split()[-1]) == ns_pid:
                    return pid
            time.sleep(0.001)
        return None
