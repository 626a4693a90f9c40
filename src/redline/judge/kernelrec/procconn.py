"""Lineage from the kernel: fork, exec and exit events from the proc connector.

A netlink socket (`NETLINK_CONNECTOR`, group `CN_IDX_PROC`) gets one event for every fork,
exec and exit on the machine, with host PIDs. Each fork names the parent at the moment of the
fork, so a child later reparented to init (`&`, `setsid`, a double fork) keeps its real
parent, and no environment variable is consulted. Only the descendants of the sandbox's PID 1
are kept. Events that arrive before PID 1 is known are held and replayed once it is.

Losing events (the socket's buffer overflowed: `ENOBUFS`) is recorded as `dropped`; the judge
treats a record with drops as incomplete and fails closed on what it would have decided.
Needs root (CAP_NET_ADMIN); without it `error` says why and nothing is recorded.
"""

from __future__ import annotations

import errno
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_EVENT_FORK, PROC_EVENT_EXEC, PROC_EVENT_EXIT = 0x1, 0x2, 0x80000000
SO_RCVBUFFORCE = 33
RCVBUF = 32 << 20  # 32 MiB of events before the kernel drops any
HELD_MAX = 200_000  # events held before PID 1 is known (the sandbox's boot: a few hundred)
NLMSG = struct.Struct("IHHII")
CNMSG = struct.Struct("IIIIHH")
EVENT = struct.Struct("IIQ")


@dataclass
class ProcEvent:
    """One event about a process inside: `parent` is set for forks (at the moment of the fork);
    `t` is the kernel's time of the event (CLOCK_MONOTONIC: the clock of time.monotonic())."""

    kind: str  # fork | exec | exit
    pid: int
    t: float
    parent: int | None = None
    argv: list[str] | None = None  # read at exec time (may be gone already: None)
    # its environment, read at exec time too (kept for the judge, never in the evidence dump):
    # a process can rewrite what /proc/PID/environ shows later, from its own memory
    env: dict[str, str] | None = field(default=None, repr=False)

    def public(self) -> dict[str, object]:
        out: dict[str, object] = {"kind": self.kind, "pid": self.pid, "t": round(self.t, 4)}
        if self.parent is not None:
            out["parent"] = self.parent
        if self.argv is not None:
            out["argv"] = self.argv
        return out


def _argv(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            raw = fh.read(8192)
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]] or None


def _environ(pid: int) -> dict[str, str] | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            raw = fh.read(1 << 17)
    except OSError:
        return None
    pairs = (e.decode(errors="replace").partition("=") for e in raw.split(b"\0") if e)
    return {k: v for k, _, v in pairs}


def parse(data: bytes) -> list[tuple[int, int, int, int]]:
    """(what, pid, parent, t_ns) per process event in one netlink datagram; threads left out."""
    out = []
    off = 0
    while off + NLMSG.size <= len(data):
        length = NLMSG.unpack_from(data, off)[0]
        if length < NLMSG.size:
            break
        body = off + NLMSG.size
        clen = CNMSG.unpack_from(data, body)[4]
        ev = body + CNMSG.size
        if clen >= EVENT.size + 8:
            what, _cpu, t_ns = EVENT.unpack_from(data, ev)
            d = ev + EVENT.size
            if what == PROC_EVENT_FORK:
                _ppid, ptgid, cpid, ctgid = struct.unpack_from("iiii", data, d)
                if cpid == ctgid:
                    out.append((what, ctgid, ptgid, t_ns))
            elif what in (PROC_EVENT_EXEC, PROC_EVENT_EXIT):
                pid, tgid = struct.unpack_from("ii", data, d)
                if pid == tgid:
                    out.append((what, tgid, 0, t_ns))
        off += (length + 3) & ~3
    return out


@dataclass
class ProcRecorder:
    """Subscribe with `start()` before the sandbox boots, `attach(pid1)` once it is up,
    `stop()` at teardown. `events` holds only processes inside, in order."""

    events: list[ProcEvent] = field(default_factory=list)
    dropped: int = 0
    error: str | None = None
    root: int | None = None
    _inside: set[int] = field(default_factory=set)
    _parent_of: dict[int, int] = field(default_factory=dict)  # the last fork of each pid
    _held: list[tuple[int, int, int, float]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sock: socket.socket | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    read_s: float = 0.0  # CPU time the reader thread spent

    @property
    def ok(self) -> bool:
        return self.error is None and self.dropped == 0 and self._sock is not None

    def start(self) -> bool:
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            sock.bind((0, CN_IDX_PROC))
            op = struct.pack("I", PROC_CN_MCAST_LISTEN)
            cn = CNMSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(op), 0) + op
            sock.send(NLMSG.pack(NLMSG.size + len(cn), 3, 0, 0, 0) + cn)  # NLMSG_DONE
            sock.settimeout(0.2)
        except OSError as exc:
            self.error = f"the proc connector is not available: {exc}"
            return False
        self._sock = sock
        self._thread = threading.Thread(target=self._read, daemon=True, name="kernelrec-proc")
        self._thread.start()
        return True

    def attach(self, pid1: int) -> None:
        """The sandbox's PID 1 (host PID): from now on its descendants are inside."""
        with self._lock:
            self.root = pid1
            self._inside.add(pid1)
            held, self._held = self._held, []
            for item in held:
                self._take(*item)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        if self._sock is not None:
            self._sock.close()

    def _read(self) -> None:
        assert self._sock is not None
        c0 = time.thread_time()
        while not self._stop.is_set():
            try:
                data = self._sock.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self.dropped += 1  # the kernel dropped events: the record is incomplete
                    continue
                if not self._stop.is_set():
                    self.error = f"the proc connector stopped: {exc}"
                break
            with self._lock:
                for what, pid, parent, t_ns in parse(data):
                    if self.root is None:
                        if len(self._held) < HELD_MAX:
                            self._held.append((what, pid, parent, t_ns / 1e9))
                        else:
                            self.dropped += 1
                        continue
                    self._take(what, pid, parent, t_ns / 1e9)
            self.read_s = time.thread_time() - c0

    def _take(self, what: int, pid: int, parent: int, now: float) -> None:
        if what == PROC_EVENT_FORK:
            if parent in self._inside:
                self._inside.add(pid)
                self._parent_of[pid] = parent
                self.events.append(ProcEvent("fork", pid, now, parent=parent))
        elif pid in self._inside:
            if what == PROC_EVENT_EXEC:
                self.events.append(ProcEvent("exec", pid, now, argv=_argv(pid),
                                             env=_environ(pid)))
            else:
                self.events.append(ProcEvent("exit", pid, now))
                self._inside.discard(pid)  # its PID may be reused outside

    # ----- what the judge asks -------------------------------------------------------------
    def parents(self) -> dict[int, int]:
        """pid -> parent at the moment of its fork, for every process forked inside (the last
        life of a reused PID wins)."""
        with self._lock:
            return dict(self._parent_of)

    def argv_at_exec(self, pid: int) -> list[str] | None:
        """The command line of `pid` as read just after its last exec (None: not read)."""
        with self._lock:
            return next((e.argv for e in reversed(self.events)
                         if e.kind == "exec" and e.pid == pid), None)

    def env_at_exec(self, pid: int) -> dict[str, str] | None:
        """The environment of `pid` as read just after its last exec (None: not read)."""
        with self._lock:
            return next((e.env for e in reversed(self.events)
                         if e.kind == "exec" and e.pid == pid), None)

    def exec_at(self, pid: int) -> float | None:
        """The kernel time of `pid`'s last exec in its last life (None: it only forked)."""
        with self._lock:
            for e in reversed(self.events):
                if e.pid == pid and e.kind == "fork":
                    return None
                if e.pid == pid and e.kind == "exec":
                    return e.t
            return None

    def forked_at(self, pid: int) -> float | None:
        """The kernel time `pid` was forked (its last life, for a reused PID)."""
        with self._lock:
            return next((e.t for e in reversed(self.events)
                         if e.kind == "fork" and e.pid == pid), None)

    def child_towards(self, pid: int, ancestor: int) -> int | None:
        """The child of `ancestor` on the fork path down to `pid` (for an agent: the terminal
        that ran the command), or None where `pid` does not descend from it."""
        with self._lock:
            parents = self._parent_of
            return self._child_towards(parents, pid, ancestor)

    @staticmethod
    def _child_towards(parents: dict[int, int], pid: int, ancestor: int) -> int | None:
        cur: int | None = pid
        for _ in range(4096):
            parent = parents.get(cur) if cur is not None else None
            if parent is None:
                return None
            if parent == ancestor:
                return cur
            cur = parent
        return None

    def descends_from(self, pid: int, ancestor: int) -> bool | None:
        """Whether `pid` was forked, at any depth, from `ancestor` (None: the record cannot
        say: it has drops or never saw `pid` forked)."""
        if not self.ok:
            return None
        with self._lock:
            parents = self._parent_of
            if pid not in parents:
                return None
            cur: int | None = pid
            for _ in range(4096):
                if cur == ancestor:
                    return True
                cur = parents.get(cur) if cur is not None else None
                if cur is None:
                    return False
            return False

    def tree(self, root: int) -> list[dict[str, object]]:
        """Every process `root` started, at any depth, with its argv at each exec, in order:
        what a command really ran (the trace viewer shows it)."""
        with self._lock:
            events = list(self.events)
        family = {root}
        out = []
        for e in events:
            if e.kind == "fork" and e.parent in family:
                family.add(e.pid)
            if e.pid in family and e.pid != root:
                out.append(e.public())
        return out

    def public(self) -> dict[str, object]:
        with self._lock:
            n = len(self.events)
        return {"recorder": "proc connector (NETLINK_CONNECTOR, CN_IDX_PROC)",
                "ok": self.ok, "error": self.error, "dropped": self.dropped, "events": n,
                "sandbox_pid1": self.root, "reader_cpu_s": round(self.read_s, 4)}

    def dump(self) -> list[dict[str, object]]:
        with self._lock:
            return [e.public() for e in self.events]


def started_in(events: list[dict[str, object]], parent: int, t0: float,
               t1: float) -> list[dict[str, object]]:
    """From a dumped record (`ProcRecorder.dump`): every process a command started, i.e. the
    children `parent` forked between t0 and t1 (kernel time) and all their descendants, in
    fork order, each with the command line of its last exec."""
    family: set[int] = set()
    out: dict[int, dict[str, object]] = {}
    for e in events:
        pid, kind = e.get("pid"), e.get("kind")
        if not isinstance(pid, int):
            continue
        if kind == "fork":
            t = e.get("t")
            ours = e.get("parent") == parent and isinstance(t, float | int) and t0 <= t <= t1
            if ours or e.get("parent") in family:
                family.add(pid)
                out[pid] = {"pid": pid, "parent": e.get("parent"), "argv": None}
        elif kind == "exec" and pid in family and e.get("argv"):
            out[pid]["argv"] = e["argv"]
        elif kind == "exit" and pid in family:
            family.discard(pid)  # its PID may be reused
    return list(out.values())
