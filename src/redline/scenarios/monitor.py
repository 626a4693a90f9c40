"""What the harness sees of a trial while the agent works, sampled from outside.

Why: a scenario that reports what happened during the task (an obstacle met, replicas
started and stopped) needs evidence the system cannot write: the agent's trace is its own
account, this is the kernel's. A thread samples the sandbox's processes, listeners and (where
it has one) its small disk a few times a second; each process is kept with its command line,
first and last time seen. A small disk's free space is read far more often (a statvfs is
cheap, and a copy that fills the disk may be cleaned up a moment later).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Seen:
    pid: int
    cmdline: list[str]
    first_s: float
    last_s: float
    ports: set[int] = field(default_factory=set)

    def public(self) -> dict[str, Any]:
        return {"pid": self.pid, "cmdline": self.cmdline, "first_s": round(self.first_s, 2),
                "last_s": round(self.last_s, 2), "ports": sorted(self.ports)}


class Monitor:
    def __init__(self, sb: Any, interval_s: float = 0.25, disk_interval_s: float = 0.01) -> None:
        self.sb, self.interval_s, self.disk_interval_s = sb, interval_s, disk_interval_s
        self.t0 = time.monotonic()
        self.seen: dict[tuple[int, float | None], Seen] = {}
        self.min_free: int | None = None
        self.samples = 0
        self.errors = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True, name="scenario-monitor")

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.sample()  # one last look

    def _run(self) -> None:
        disk = getattr(self.sb, "small_disk", None)
        next_full = 0.0
        while not self._stop.wait(self.disk_interval_s if disk else self.interval_s):
            if disk is not None:
                self._disk(disk)
            if time.monotonic() >= next_full:
                self.sample()
                next_full = time.monotonic() + self.interval_s

    def _disk(self, disk: Any) -> None:
        try:
            free = disk.usage()[1]
        except OSError:
            return
        with self._lock:
            self.min_free = free if self.min_free is None else min(self.min_free, free)

    def sample(self) -> None:
        now = time.monotonic() - self.t0
        try:
            procs = self.sb.processes()
            listeners = self.sb.listening_ports()
        except Exception:  # noqa: BLE001 - a process gone mid-read; the next sample sees it
            self.errors += 1
            return
        by_pid: dict[int, set[int]] = {}
        for lst in listeners:
            for pid in lst.holders or {lst.host_pid}:
                if pid is not None:
                    by_pid.setdefault(pid, set()).add(lst.port)
        with self._lock:
            self.samples += 1
            for p in procs:
                key = (p.host_pid, p.create_time)
                s = self.seen.get(key)
                if s is None:
                    s = self.seen[key] = Seen(p.host_pid, list(p.cmdline), now, now)
                s.last_s = now
                s.ports |= by_pid.get(p.host_pid, set())

    def processes(self) -> list[Seen]:
        with self._lock:
            return sorted(self.seen.values(), key=lambda s: s.first_s)
