"""Readers of the kernel's /proc, from the host side: processes, namespaces and TCP sockets.

The judge and the sandbox both read what runs inside a sandbox through these. Nothing here
trusts a process's own account of itself: command lines, parents, open sockets and the
network namespace's TCP table all come from the kernel.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")


def boot_time() -> float:
    """When the kernel booted, unix seconds, to the clock's precision (/proc/stat's btime is
    whole seconds: too coarse to order a file change against a process start). Read at each
    use, never cached: the wall clock may be stepped while a harness runs (a VM's clock sync),
    and a start time from a stale boot time is off by the step, which a fresh-clone CI run
    showed as genuine copies "changed after the process started" 25 minutes in. It changes
    only with such a step (over 1 ms), so a start time read twice is the same number."""
    now = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
    if abs(now - _BOOT[0]) > 0.001:
        _BOOT[0] = now
    return _BOOT[0]


_BOOT = [time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)]


def readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def ns_inode(pid: int, kind: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def status_field(pid: int, field: str) -> str | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def start_ticks(pid: int) -> int | None:
    """When a live process started, in kernel clock ticks since boot; None for a process that
    is gone or a zombie. With its PID it names one process: PIDs are reused (pid_max may be
    32768), start times are not."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def runs(pid: int, ticks: int | None) -> bool:
    """The process that had `pid` and started at `ticks` still runs (not a later one that was
    given its PID)."""
    return ticks is not None and start_ticks(pid) == ticks


def start_time(pid: int) -> float | None:
    """When the process started, unix seconds (kernel clock ticks: 1/CLK_TCK resolution)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            ticks = float(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None
    return boot_time() + ticks / CLK_TCK


def environ(pid: int) -> dict[str, str]:
    """The environment a process was started with (as the kernel keeps it)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            raw = fh.read()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            out[key.decode(errors="replace")] = value.decode(errors="replace")
    return out


@dataclass(frozen=True)
class TcpSocket:
    local_addr: str  # hex, as the kernel writes it
    local_port: int
    remote_addr: str
    remote_port: int
    state: str  # hex state: 0A listen, 01 established, 06 time-wait, ...
    inode: int

    @property
    def local(self) -> tuple[str, int]:
        return self.local_addr, self.local_port

    @property
    def remote(self) -> tuple[str, int]:
        return self.remote_addr, self.remote_port


LISTEN = "0A"


V4_MAPPED = "0000000000000000FFFF0000"  # ::ffff:a.b.c.d, as /proc/net/tcp6 writes it


def _as_v4(addr: str) -> str:
    """An IPv4-mapped address as tcp writes the IPv4 one: a server listening on `::` accepts
    127.0.0.1 as ::ffff:127.0.0.1, and its end must still pair with the client's."""
    return addr[len(V4_MAPPED):] if addr.upper().startswith(V4_MAPPED) else addr


def tcp_table(host_pid: int) -> list[TcpSocket]:
    """The TCP sockets of the network namespace `host_pid` lives in, read straight from the
    kernel (/proc/PID/net/tcp{,6}), short-lived TIME_WAIT ones included."""
    rows: list[TcpSocket] = []
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{host_pid}/net/{name}") as fh:
                next(fh, None)
                for line in fh:
                    p = line.split()
                    if len(p) > 9:
                        laddr, lport = p[1].rsplit(":", 1)
                        raddr, rport = p[2].rsplit(":", 1)
                        laddr, raddr = _as_v4(laddr), _as_v4(raddr)
                        rows.append(TcpSocket(laddr, int(lport, 16), raddr, int(rport, 16),
                                              p[3], int(p[9])))
        except OSError:
            continue
    return rows


def socket_owners(pids: Iterable[int]) -> dict[int, set[int]]:
    """Socket inode -> the processes holding it open (a listening socket may be shared)."""
    owners: dict[int, set[int]] = defaultdict(set)
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            target = readlink(f"/proc/{pid}/fd/{fd}") or ""
            if target.startswith("socket:["):
                owners[int(target[8:-1])].add(pid)
    return owners


# sock_diag (netlink): TCP sockets bound to a port but not listening, which /proc/net/tcp
# leaves out. Linux dumps them when asked for TCP_BOUND_INACTIVE (6.8 and later; each is
# reported with the state TCP_CLOSE); an older kernel answers nothing for that state, and the
# caller falls back on its other signs.
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_DUMP_REQUEST = 0x301  # NLM_F_REQUEST | NLM_F_ROOT | NLM_F_MATCH
_NLMSG_DONE, _NLMSG_ERROR = 3, 2
TCP_BOUND_INACTIVE = 13
_TCP_LISTEN = 10


def bound_inactive() -> dict[int, int]:
    """Socket inode -> port of every TCP socket bound but not listening in the calling
    thread's network namespace (run it there: a sandbox's `netns_call`). An API server that
    binds its port before it loads shows this while it loads."""
    import socket  # noqa: PLC0415 - only this reader needs it
    import struct  # noqa: PLC0415

    out: dict[int, int] = {}
    for family in (socket.AF_INET, socket.AF_INET6):
        req = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0,
                          1 << TCP_BOUND_INACTIVE) + bytes(48)
        msg = struct.pack("=LHHLL", 16 + len(req), _SOCK_DIAG_BY_FAMILY, _NLM_F_DUMP_REQUEST,
                          1, 0) + req
        try:
            with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as nl:
                nl.settimeout(2.0)
                nl.send(msg)
                done = False
                while not done:
                    data = nl.recv(1 << 16)
                    if not data:
                        break
                    at = 0
                    while at + 16 <= len(data):
                        length, kind = struct.unpack_from("=LH", data, at)
                        if kind in (_NLMSG_DONE, _NLMSG_ERROR) or length < 16:
                            done = True
                            break
                        body = at + 16
                        if length >= 16 + 72 and data[body + 1] != _TCP_LISTEN:
                            port = struct.unpack_from("!H", data, body + 4)[0]
                            out[struct.unpack_from("=I", data, body + 68)[0]] = port
                        at += (length + 3) & ~3
        except OSError:
            continue
    return out
