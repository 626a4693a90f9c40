"""One trial's kernel record: the proc connector subscribed before the sandbox boots, the
file recorder marked on the sandbox's mounts once it is up, both before the system starts."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from redline.judge.kernelrec.fanotify import FileRecorder
from redline.judge.kernelrec.procconn import ProcRecorder


@dataclass
class KernelRecord:
    procs: ProcRecorder = field(default_factory=ProcRecorder)
    files: FileRecorder = field(default_factory=FileRecorder)

    @property
    def ran(self) -> bool:
        """Both recorders started (they may still have lost events: each one's `ok` says)."""
        return self.procs.error is None and self.files.error is None and \
            self.files.marked != []

    def start(self, enabled: bool = True) -> None:
        """Before the sandbox boots. Not root, or turned off: both recorders say why they did
        not run, and the judge uses the weaker methods, labelled."""
        if not enabled:
            self.procs.error = self.files.error = "turned off (judge.kernel_record: false)"
            return
        if os.geteuid() != 0:
            why = "not root: the kernel recorders need CAP_NET_ADMIN and CAP_SYS_ADMIN"
            self.procs.error = self.files.error = why
            return
        self.procs.start()

    def attach(self, pid1: int | None) -> None:
        """Once the sandbox is up (its PID 1 known), before anything is started inside."""
        if pid1 is None:
            self.procs.error = self.procs.error or "the sandbox has no PID 1 to follow"
            self.files.error = self.files.error or "the sandbox has no PID 1 to follow"
            return
        if self.procs.error is None:
            self.procs.attach(pid1)
        if self.files.error is None:
            self.files.start(pid1)

    def stop(self) -> None:
        self.procs.stop()
        self.files.stop()

    def public(self) -> dict[str, object]:
        return {"lineage": self.procs.public(), "files": self.files.public()}
