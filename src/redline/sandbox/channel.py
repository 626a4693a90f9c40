"""The harness's channel to the sandbox's init: requests go out marshal-encoded with file
descriptors attached; replies come back as JSON (init writes them by hand), so the harness
never unmarshals bytes that came from inside the sandbox."""

from __future__ import annotations

import json
import marshal
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from redline.sandbox.errors import SandboxError


class InitChannel:
    """One request at a time over init's socket. `why_gone()` names the cause when init is
    gone (a limit that killed the sandbox, say), for the error message."""

    def __init__(self, sock: socket.socket, why_gone: Callable[[], str | None]) -> None:
        self.sock = sock
        self._why_gone = why_gone
        self._lock = threading.Lock()

    def request(self, req: dict[str, Any], fds: list[int] | None = None) -> dict[str, Any]:
        with self._lock:
            try:
                socket.send_fds(self.sock, [marshal.dumps(req)], fds or [])
                msg, got, _flags, _addr = socket.recv_fds(self.sock, 1 << 20, 1)
                if not msg:  # init closed the channel: it is gone (a limit killed it, say)
                    for fd in got:
                        os.close(fd)
                    raise ConnectionResetError("init closed its channel")
                reply = json.loads(msg)
            except OSError as exc:
                raise SandboxError(f"sandbox init is gone ({exc}); killed by "
                                   f"{self._why_gone() or 'unknown cause'}") from exc
        if got:
            reply["_fd"] = got[0]
        if "error" in reply:
            for fd in got:
                os.close(fd)
            raise SandboxError(reply["error"])
        return reply

    def spawn(self, argv: list[str], cwd: str, env: dict[str, str],
              fds: dict[str, int]) -> int:
        """Ask init to start argv with the given descriptors (closed here once sent); returns
        its PID inside."""
        if "stdout" not in fds:
            fds["stdout"] = os.open(os.devnull, os.O_WRONLY)
        try:
            reply = self.request({"op": "spawn", "argv": [str(a) for a in argv], "cwd": cwd,
                                  "env": env, "fds": list(fds)}, list(fds.values()))
        finally:
            for fd in fds.values():
                os.close(fd)
        return int(reply["pid"])

    def status(self, ns_pid: int) -> dict[str, Any]:
        return self.request({"op": "status", "pid": ns_pid})

    def new_socket(self, family: int, type: int, proto: int = 0) -> int:  # noqa: A002
        """A socket made by init inside, so it belongs to the sandbox's network namespace."""
        fd = self.request({"op": "socket", "family": int(family), "type": int(type),
                           "proto": int(proto)}).get("_fd")
        if fd is None:
            raise SandboxError("init sent no socket")
        return int(fd)

    def close(self) -> None:
        self.sock.close()
