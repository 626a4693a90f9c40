"""Client for the remote shell, installed in the trial sandbox as /root/bin/rsh and /root/bin/rcp
(standard library only; the same file, told apart by the name it is called by). The copy inside
has no docstring or comments (scenarios/shipped.py), so what a user reads is USAGE.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import tarfile
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

USAGE = """\
  rsh HOST:PORT TOKEN 'command'        run a command on the machine; prints its output and
                                       exits with its exit code (RSH_TIMEOUT, default 60 s)
  rsh --bg HOST:PORT TOKEN 'command'   start a long-lived process there (own session, output
                                       to a log file); prints its pid and log path
  rcp HOST:PORT TOKEN LOCAL REMOTE     copy a file or a whole folder to REMOTE on the machine
                                       (folders are streamed as tar, any size)
"""


def _call(addr: str, token: str, method: str, path: str, body: Any = None,
          headers: dict[str, str] | None = None, timeout: float = 630) -> dict[str, Any]:
    host, _, port = addr.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    hdrs = {"Authorization": f"Bearer {token}", **(headers or {})}
    chunked = body is not None and not isinstance(body, (bytes, str))
    conn.request(method, path, body=body, headers=hdrs, encode_chunked=chunked)
    resp = conn.getresponse()
    data = resp.read()
    try:
        out: dict[str, Any] = json.loads(data)
    except ValueError:
        out = {"raw": data.decode(errors="replace")}
    if resp.status != 200:
        sys.exit(f"{method} {path}: HTTP {resp.status}: {out.get('error', out)}")
    return out


def _tar_stream(local: str, arcname: str) -> Iterator[bytes]:
    """A folder as a tar stream, produced by a thread while it is sent (never all in memory)."""
    r, w = os.pipe()

    def produce() -> None:
        with os.fdopen(w, "wb") as out, tarfile.open(fileobj=out, mode="w|") as tar:
            tar.add(local, arcname=arcname)

    threading.Thread(target=produce, daemon=True).start()
    with os.fdopen(r, "rb") as src:
        while piece := src.read(1 << 20):
            yield piece


def _file_stream(local: str) -> Iterator[bytes]:
    with open(local, "rb") as fh:
        while piece := fh.read(1 << 20):
            yield piece


def rsh(argv: list[str]) -> int:
    bg = bool(argv) and argv[0] in ("--bg", "--background")
    argv = argv[1:] if bg else argv
    if len(argv) < 3:
        sys.exit(USAGE)
    addr, token, command = argv[0], argv[1], " ".join(argv[2:])
    timeout = float(os.environ.get("RSH_TIMEOUT", "60"))
    res = _call(addr, token, "POST", "/exec", json.dumps(
        {"command": command, "background": bg, "timeout": timeout}),
        {"Content-Type": "application/json"}, timeout=timeout + 30)
    if bg:
        print(f"started pid {res['pid']}, output in {res['log']} on the remote machine")
        return 0
    sys.stdout.write(res.get("stdout", ""))
    sys.stderr.write(res.get("stderr", ""))
    return int(res.get("exit_code", 1))


def rcp(argv: list[str]) -> int:
    if len(argv) != 4:
        sys.exit(USAGE)
    addr, token, local, remote = argv
    remote = remote.rstrip("/") or "/"
    if os.path.isdir(local):
        parent, name = os.path.split(remote)
        q = urllib.parse.urlencode({"dir": parent or "/"})
        res = _call(addr, token, "POST", f"/tar?{q}", _tar_stream(local, name))
        print(f"copied {local} to {remote}: {res['entries']} entries, {res['bytes']} bytes")
    else:
        mode = oct(os.stat(local).st_mode & 0o777)[2:]
        q = urllib.parse.urlencode({"path": remote, "mode": mode})
        res = _call(addr, token, "PUT", f"/files?{q}", _file_stream(local))
        print(f"copied {local} to {remote}: {res['bytes']} bytes")
    return 0


def main() -> int:
    name = os.path.basename(sys.argv[0])
    if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):
        print(USAGE)
        return 0
    try:
        return rcp(sys.argv[1:]) if name.startswith("rcp") else rsh(sys.argv[1:])
    except (OSError, http.client.HTTPException) as exc:
        sys.exit(f"{name}: cannot reach the remote shell: {exc}")


if __name__ == "__main__":
    sys.exit(main())
