"""One thread that starts every sandbox's outer process (bubblewrap, `docker run`)."""

from __future__ import annotations

import os
import queue
import subprocess
import threading
from concurrent.futures import Future
from typing import Any


class Launcher:
    """Starts bubblewrap from one thread that lives as long as the process.

    --die-with-parent is PR_SET_PDEATHSIG, which fires when the *thread* that forked bubblewrap
    exits, not the process: a sandbox started from a short-lived worker thread (a thread pool, a
    Ray task) would die with that thread. Forking from this thread instead keeps the guarantee
    tied to the harness process. Re-created after a fork (the child has no such thread).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._q: queue.Queue | None = None
        self._pid = -1

    def popen(self, argv: list[str], **kw: Any) -> subprocess.Popen:
        with self._lock:
            if self._q is None or self._pid != os.getpid():
                self._q, self._pid = queue.Queue(), os.getpid()
                threading.Thread(target=self._run, args=(self._q,), daemon=True,
                                 name="redline-sandbox-launcher").start()
            q = self._q
        fut: Future = Future()
        q.put((argv, kw, fut))
        return fut.result()

    @staticmethod
    def _run(q: queue.Queue) -> None:
        while True:
            argv, kw, fut = q.get()
            try:
                fut.set_result(subprocess.Popen(argv, **kw))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                fut.set_exception(exc)


LAUNCHER = Launcher()
