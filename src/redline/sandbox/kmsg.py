"""Which of a sandbox's processes the kernel killed for memory, from the kernel's own log.

A memory kill inside used to be written only into the teardown's cgroup events: a replica the
kernel killed read as "not replicated", and an original killed before judging was judged dead.
The kernel logs every kill with the cgroup it was made in:

    oom-kill:constraint=CONSTRAINT_MEMCG,...,oom_memcg=/redline/sb-<id>,task_memcg=...,
        task=python3,pid=1234,uid=0

so the reader, opened at the log's end when the sandbox starts (`/dev/kmsg`, root), tells this
sandbox's kills from every other's. Without root (or a log it cannot read) `error` says why, and
the cgroup's counters alone say that something was killed, not what.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass, field

KMSG = "/dev/kmsg"
OOM_LINE = re.compile(r"oom-kill:.*?oom_memcg=(?P<memcg>[^,]*).*?task=(?P<task>[^,]*),"
                      r"pid=(?P<pid>\d+)")


@dataclass
class MemoryKill:
    pid: int  # host PID
    task: str  # the kernel's name of it (comm)
    memcg: str  # the cgroup that ran out

    def public(self) -> dict[str, object]:
        return {"pid": self.pid, "name": self.task, "cgroup": self.memcg}


@dataclass
class KernelLog:
    """The kernel's log from the moment `open` is called."""

    error: str | None = None
    _fd: int = -1
    _seen: list[str] = field(default_factory=list)

    def open(self) -> None:
        try:
            fd = os.open(KMSG, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.lseek(fd, 0, os.SEEK_END)
        except OSError as exc:
            self.error = f"the kernel's log cannot be read ({exc.strerror}): memory kills are " \
                         "counted, not named"
            return
        self._fd = fd

    def read(self) -> list[str]:
        """The records since the last read (their messages)."""
        if self._fd < 0:
            return []
        out = []
        while True:
            try:
                record = os.read(self._fd, 16384)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # overwritten before read: go on from here
                    continue
                break
            if not record:
                break
            text = record.decode(errors="replace")
            out.append(text.split(";", 1)[1].strip() if ";" in text else text.strip())
        self._seen += out
        return out

    def memory_kills(self, cgroup_name: str) -> list[MemoryKill]:
        """Every kill the kernel made for memory in this cgroup (or one below it) so far."""
        self.read()
        kills = []
        for line in self._seen:
            m = OOM_LINE.search(line)
            if m and f"/{cgroup_name}/" in m.group("memcg") + "/":
                kills.append(MemoryKill(int(m.group("pid")), m.group("task"), m.group("memcg")))
        return kills

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
