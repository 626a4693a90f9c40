"""What processes inside write to stdout and stderr reaches the host only through pipes that
the harness reads, never as host files opened for them.

Why: a host file handed to a process inside is reachable by path (`/proc/self/fd/1` names its
host location, a giveaway) and is a way around the disk limit (it lies outside the sandbox's
folders, so nothing measured it). A pipe names nothing, and every byte copied out is counted
here against the sandbox's disk budget before it is written.
"""

from __future__ import annotations

import os
import select
import selectors
import threading
import time
from collections.abc import Callable
from typing import BinaryIO

CHUNK = 1 << 16


class OutputPump:
    """One thread per sandbox copying pipes to host files, counting the bytes.

    `on_bytes(total)` is called after each copy with the running total, so the sandbox can stop
    a writer that goes over its disk limit between two watchdog ticks.
    """

    def __init__(self, on_bytes: Callable[[int], bool]) -> None:
        self.total = 0
        self._on_bytes = on_bytes
        self._sel = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._pending: list[tuple[int, BinaryIO | None]] = []
        self._closed = False
        self._thread: threading.Thread | None = None

    def add(self, read_fd: int, sink: BinaryIO | None) -> None:
        """Copy read_fd to sink (None: count and drop) until the last writer closes it."""
        with self._lock:
            if self._closed:
                os.close(read_fd)
                if sink is not None:
                    sink.close()
                return
            self._pending.append((read_fd, sink))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="sandbox-output")
                self._thread.start()
            # under the lock: once the thread has seen `_closed` it closes the wake pipe, and
            # a write after that would hit a closed (or reused) descriptor
            os.write(self._wake_w, b"x")

    def close(self, timeout: float = 2.0) -> None:
        """Copy what is left, then stop (the sandbox is gone: every writer is dead)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.write(self._wake_w, b"x")  # before the thread can see `_closed` (see add)
        if self._thread is not None:
            self._thread.join(timeout)
        else:
            self._finish()

    def _run(self) -> None:
        while True:
            for key, _ in self._sel.select(1.0):
                if key.data is None:
                    try:
                        os.read(self._wake_r, 4096)
                    except BlockingIOError:
                        pass
                    continue
                self._copy(key.fd, key.data[0])
            with self._lock:
                pending, self._pending = self._pending, []
                closed = self._closed
            for fd, sink in pending:
                os.set_blocking(fd, False)
                self._sel.register(fd, selectors.EVENT_READ, (sink,))
            if closed:
                for key in list(self._sel.get_map().values()):
                    if key.data is not None:
                        self._copy(key.fd, key.data[0], to_eagain=True)
                self._finish()
                return

    def _copy(self, fd: int, sink: BinaryIO | None, to_eagain: bool = False) -> None:
        while True:
            try:
                data = os.read(fd, CHUNK)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._drop(fd, sink)
                return
            self.total += len(data)
            if self._on_bytes(self.total) and sink is not None:
                try:
                    sink.write(data)
                    sink.flush()
                except OSError:  # the host disk is full: the output is lost, not the trial
                    pass
            if not to_eagain:
                return

    def _drop(self, fd: int, sink: BinaryIO | None) -> None:
        self._sel.unregister(fd)
        os.close(fd)
        if sink is not None:
            try:
                sink.close()
            except OSError:  # a full host disk: what was buffered is lost, not the pump
                pass

    def _finish(self) -> None:
        for key in list(self._sel.get_map().values()):
            if key.data is not None:
                self._drop(key.fd, key.data[0])
        self._sel.close()
        os.close(self._wake_r)
        os.close(self._wake_w)


EXEC_OUTPUT_CAP = 16 << 20  # bytes of one exec's stdout (and of its stderr) kept in memory


def feed(fd: int, data: bytes) -> None:
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    except OSError:  # the command exited without reading it all
        pass


def read_some(outs: dict[int, bytearray], eof: set[int], wait: float) -> None:
    """Read what is ready on non-blocking pipes (waiting up to `wait` s for the first byte),
    keeping at most EXEC_OUTPUT_CAP bytes of each; pipes at their end go into `eof`."""
    live = [fd for fd in outs if fd not in eof]
    if not live:
        time.sleep(wait)
        return
    ready, _, _ = select.select(live, [], [], wait)
    for fd in ready:
        while True:
            try:
                chunk = os.read(fd, CHUNK)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                eof.add(fd)
                break
            buf = outs[fd]
            if len(buf) < EXEC_OUTPUT_CAP:
                buf += chunk[:EXEC_OUTPUT_CAP - len(buf)]
