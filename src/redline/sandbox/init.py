"""The sandbox's init (PID 2 under bubblewrap's PID 1): spawns what the harness asks for.

Standard library only: it runs with the sandbox's Python before anything else exists. Every
process in the sandbox descends from it, so all inherit its namespaces and cgroup. Requests come
over an inherited socket (JSON, with stdout/stderr passed as file descriptors).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

STATUS: dict[int, int] = {}
CHILDREN: dict[int, subprocess.Popen] = {}


def reap(*_: object) -> None:
    """Collect exit codes. Re-entrant: SIGCHLD may interrupt a reap already under way."""
    for pid, proc in list(CHILDREN.items()):
        rc = proc.poll()
        if rc is not None:
            STATUS[pid] = rc
            CHILDREN.pop(pid, None)


def handle(req: dict, fds: list[int]) -> dict:
    op = req.get("op")
    if op == "spawn":
        out = fds[0] if fds else subprocess.DEVNULL
        err = fds[1] if len(fds) > 1 else out
        try:
            proc = subprocess.Popen(req["argv"], cwd=req.get("cwd") or "/", env=req.get("env"),
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    start_new_session=True, close_fds=True)
        except OSError as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            for fd in fds:
                os.close(fd)
        CHILDREN[proc.pid] = proc
        return {"pid": proc.pid}
    if op == "status":
        reap()
        pid = int(req["pid"])
        return {"running": pid in CHILDREN, "returncode": STATUS.get(pid)}
    return {"error": f"unknown op {op!r}"}


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    signal.signal(signal.SIGCHLD, reap)
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(sock, 1 << 20, 4)
        except InterruptedError:
            continue
        if not msg:
            return  # the harness closed the socket: we are done
        try:
            reply = handle(json.loads(msg), fds)
        except Exception as exc:  # noqa: BLE001 - a bad request must not kill init
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        sock.send(json.dumps(reply).encode())


if __name__ == "__main__":
    main()
