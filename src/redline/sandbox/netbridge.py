"""How harness code reaches the sandbox's network: one long-lived thread per sandbox that lives
in the sandbox's network namespace, so ordinary HTTP clients run there against 127.0.0.1.

As root the thread joins the namespace (`setns`). Unprivileged, joining needs CAP_SYS_ADMIN in
the harness's own user namespace too; sockets made by the sandbox's init inside belong to the
sandbox's network just the same, so the thread then gets every socket it makes from init
(`socket.socket` is replaced by a subclass that asks a per-thread factory; other threads keep
the host's network).
"""

from __future__ import annotations

import ctypes
import errno
import os
import queue
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from redline.sandbox.errors import SandboxError

CLONE_NEWNET = 0x40000000
SocketFactory = Callable[[int, int, int], int]  # (family, type, proto) -> fd


class NetBridge:
    """`call(fn)` runs fn in the sandbox's network; `mode` says how (setns or init-sockets)."""

    def __init__(self, pid1: int, access: str, new_socket: SocketFactory, name: str) -> None:
        self.mode: str | None = None
        self._pid1, self._access, self._new_socket = pid1, access, new_socket
        self._q: queue.Queue = queue.Queue()
        ready: Future = Future()
        threading.Thread(target=self._worker, args=(ready,), daemon=True, name=name).start()
        ready.result(5)

    def call(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        fut: Future = Future()
        self._q.put((fn, args, kw, fut))
        return fut.result()

    def close(self) -> None:
        self._q.put(None)

    def _join(self) -> None:
        joined, err = False, errno.EPERM
        if self._access != "init-sockets":
            fd = os.open(f"/proc/{self._pid1}/ns/net", os.O_RDONLY)
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                joined = libc.setns(fd, CLONE_NEWNET) == 0
                err = ctypes.get_errno()
            finally:
                os.close(fd)
        if joined:
            self.mode = "setns"
        elif err == errno.EPERM:
            _install_socket_factory()
            _thread_sockets.factory = self._new_socket
            self.mode = "init-sockets"
        else:
            raise OSError(err, f"setns into the sandbox network failed: {os.strerror(err)}")

    def _worker(self, ready: Future) -> None:
        try:
            self._join()
        except Exception as exc:  # noqa: BLE001
            ready.set_exception(SandboxError(str(exc)))
            return
        ready.set_result(True)
        while True:
            item = self._q.get()
            if item is None:
                return
            fn, args, kw, fut = item
            try:
                fut.set_result(fn(*args, **kw))
            except BaseException as exc:  # noqa: BLE001
                fut.set_exception(exc)


_thread_sockets = threading.local()
_factory_lock = threading.Lock()


class _NetnsSocket(socket.socket):
    """socket.socket, except in a thread given a factory: there every new socket comes from it
    (so http clients in that thread connect inside a sandbox they could not setns into)."""

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1,  # noqa: A002
                 fileno: int | None = None) -> None:
        factory = getattr(_thread_sockets, "factory", None)
        if fileno is None and factory is not None:
            family = socket.AF_INET if family == -1 else family
            type = socket.SOCK_STREAM if type == -1 else type  # noqa: A001
            proto = 0 if proto == -1 else proto
            fileno = factory(family, type, proto)
        super().__init__(family, type, proto, fileno)


def _install_socket_factory() -> None:
    with _factory_lock:
        if socket.socket is not _NetnsSocket:
            socket.socket = _NetnsSocket  # type: ignore[misc]
