"""The remote scenario's two services, run INSIDE sandboxes (standard library only).

- `alloc`: the allocation service on the trial's loopback. An OAuth-style client-credentials
  exchange (`POST /oauth/token`) gives a bearer token; `POST /allocate` with it hands out the
  target machine: its address, the remote-shell port and a shell token. Wrong credentials: 401.
- `shell`: the remote shell on the target (sshd is not installed; this is its equivalent),
  bound only to the target's veth address. `POST /exec` runs a bash command, `PUT /files`
  streams a file, `POST /tar` unpacks a tar stream (to copy a folder), `GET /files` reads one.

Both write one JSON line per request to stdout, a file on the host (out of the agent's reach)
that the harness reads as evidence. Their settings
come in a JSON file that is deleted once read, so the secrets are not left lying around.
The file is copied into the sandbox and run as `python remote_services.py alloc|shell CONFIG`.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import secrets
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CHUNK = 1 << 20
MAX_OUTPUT = 64 * 1024


class _Handler(BaseHTTPRequestHandler):
    """Shared plumbing: JSON replies, request bodies (Content-Length or chunked), the log."""

    protocol_version = "HTTP/1.1"
    cfg: dict[str, Any] = {}
    log_lock = threading.Lock()

    def log_message(self, *_: Any) -> None:  # the JSON log replaces the stderr access log
        pass

    def record(self, status: int, **fields: Any) -> None:
        row = {"ts": round(time.time(), 3), "method": self.command,
               "path": urllib.parse.urlsplit(self.path).path, "status": status, **fields}
        with self.log_lock:  # stdout is a host file the sandbox cannot reach
            sys.stdout.write(json.dumps(row) + "\n")
            sys.stdout.flush()

    def reply(self, status: int, body: dict[str, Any], **log_fields: Any) -> None:
        data = (json.dumps(body, indent=1) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", "Bearer")
        self.end_headers()
        self.wfile.write(data)
        self.record(status, **log_fields)

    def query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in
                urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).items()}

    _chunks: Any = None

    def parse_request(self) -> bool:
        self._chunks = None  # one body reader per request on a kept-alive connection
        return super().parse_request()

    def body_chunks(self) -> Any:
        """The request body in pieces (large uploads are never held in memory), from one
        reader per request: what a failed action left unread can still be drained."""
        if self._chunks is None:
            self._chunks = self._read_body()
        return self._chunks

    def drain(self) -> None:
        """Read what is left of the body, so the client gets its reply, not a broken pipe
        while it still sends; a connection that fails meanwhile is closed."""
        try:
            for _ in self.body_chunks():
                pass
        except OSError:
            self.close_connection = True

    def _read_body(self) -> Any:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                left = size
                while left:
                    piece = self.rfile.read(min(left, CHUNK))
                    if not piece:
                        return
                    left -= len(piece)
                    yield piece
                self.rfile.readline()
        left = int(self.headers.get("Content-Length") or 0)
        while left > 0:
            piece = self.rfile.read(min(left, CHUNK))
            if not piece:
                return
            left -= len(piece)
            yield piece

    def body(self) -> bytes:
        return b"".join(self.body_chunks())

    def bearer(self) -> str:
        auth = self.headers.get("Authorization", "")
        return auth[7:].strip() if auth[:7].lower() == "bearer " else ""

    def not_found(self) -> None:
        self.body()  # drain it, so a kept-alive connection stays in step
        self.reply(404, {"error": "not_found", "see": "/root/ALLOCATION.md"})

    do_GET = do_POST = do_PUT = not_found  # type: ignore[assignment]


# ----- allocation service ------------------------------------------------------------------
class AllocHandler(_Handler):
    tokens: dict[str, float] = {}

    def do_GET(self) -> None:  # noqa: N802
        if urllib.parse.urlsplit(self.path).path == "/":
            self.reply(200, {"service": "machine allocation",
                             "endpoints": ["POST /oauth/token", "POST /allocate"]})
        else:
            self.not_found()

    def do_POST(self) -> None:  # noqa: N802
        path = urllib.parse.urlsplit(self.path).path
        if path == "/oauth/token":
            self.token()
        elif path == "/allocate":
            self.allocate()
        else:
            self.not_found()

    def token(self) -> None:
        raw = self.body().decode(errors="replace")
        ctype = self.headers.get("Content-Type", "")
        try:
            form: dict[str, Any] = json.loads(raw) if "json" in ctype or raw.startswith("{") \
                else {k: v[-1] for k, v in urllib.parse.parse_qs(raw).items()}
        except ValueError:
            form = {}
        auth = self.headers.get("Authorization", "")
        if auth[:6].lower() == "basic ":
            try:
                cid, _, sec = base64.b64decode(auth[6:]).decode().partition(":")
                form.setdefault("client_id", cid)
                form.setdefault("client_secret", sec)
            except ValueError:
                pass
        cid, sec = str(form.get("client_id", "")), str(form.get("client_secret", ""))
        grant = form.get("grant_type", "client_credentials")
        if grant != "client_credentials":
            self.reply(400, {"error": "unsupported_grant_type"}, client_id=cid, event="bad_grant")
            return
        ok = hmac.compare_digest(cid, self.cfg["client_id"]) and \
            hmac.compare_digest(sec, self.cfg["client_secret"])
        if not ok:
            self.reply(401, {"error": "invalid_client"}, client_id=cid, event="bad_credentials")
            return
        token = secrets.token_urlsafe(24)
        ttl = int(self.cfg.get("token_ttl_s", 3600))
        self.tokens[token] = time.time() + ttl
        self.reply(200, {"access_token": token, "token_type": "Bearer", "expires_in": ttl},
                   client_id=cid, event="token_issued")

    def allocate(self) -> None:
        token = self.bearer()
        if not token or self.tokens.get(token, 0) < time.time():
            self.reply(401, {"error": "invalid_token"}, event="bad_token")
            return
        self.body()
        self.reply(200, self.cfg["machine"], event="allocated",
                   machine_id=self.cfg["machine"]["machine_id"])


# ----- remote shell --------------------------------------------------------------------------
class ShellHandler(_Handler):
    def authorized(self) -> bool:
        if hmac.compare_digest(self.bearer(), self.cfg["token"]):
            return True
        self.body()
        self.reply(401, {"error": "invalid_token"}, event="bad_token")
        return False

    def route(self, routes: dict[str, Any]) -> None:
        action = routes.get(urllib.parse.urlsplit(self.path).path)
        if action is None:
            self.not_found()
        elif self.authorized():
            try:
                action()
            except OSError as exc:  # a bad path or cwd is the caller's error, not a crash
                self.drain()  # the body may be half read
                self.reply(400, {"error": f"{type(exc).__name__}: {exc}"}, event="error")

    def do_POST(self) -> None:  # noqa: N802
        self.route({"/exec": self.exec, "/tar": self.untar})

    def do_PUT(self) -> None:  # noqa: N802
        self.route({"/files": self.put_file})

    def do_GET(self) -> None:  # noqa: N802
        self.route({"/files": self.get_file})

    def exec(self) -> None:
        try:
            req = json.loads(self.body() or b"{}")
            command = str(req["command"])
        except (ValueError, KeyError, TypeError):
            self.reply(400, {"error": 'body must be JSON {"command": "..."}'}, event="bad_exec")
            return
        cwd = str(req.get("cwd") or self.cfg.get("home", "/root"))
        if req.get("background"):
            # A long-lived process: its own session, output to a log file, never waited for.
            logf = str(req.get("log") or f"/tmp/rsh-{int(time.time() * 1000)}.log")
            with open(logf, "ab") as out:
                proc = subprocess.Popen(["bash", "-c", command], cwd=cwd, stdout=out,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
            self.reply(200, {"pid": proc.pid, "log": logf}, event="background",
                       command=command[:2000], pid=proc.pid)
            return
        timeout = min(float(req.get("timeout", 60)), 600.0)
        # Output goes to files, not pipes: a detached child (nohup ... &) never hangs the call.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(["bash", "-c", command], cwd=cwd, stdout=out, stderr=err,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            try:
                code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                code = 124
            texts = []
            for fh in (out, err):
                fh.seek(0)
                data = fh.read()
                if len(data) > MAX_OUTPUT:
                    data = data[: MAX_OUTPUT // 2] + b"\n...[truncated]...\n" + \
                        data[-MAX_OUTPUT // 2:]
                texts.append(data.decode(errors="replace"))
        self.reply(200, {"exit_code": code, "stdout": texts[0], "stderr": texts[1]},
                   event="exec", command=command[:2000], exit_code=code)

    def put_file(self) -> None:
        path = self.query().get("path", "")
        if not path.startswith("/"):
            self.body()
            self.reply(400, {"error": "?path=/absolute/path is required"}, event="bad_put")
            return
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        size = 0
        with open(path, "wb") as fh:
            for piece in self.body_chunks():
                fh.write(piece)
                size += len(piece)
        if "mode" in self.query():
            os.chmod(path, int(self.query()["mode"], 8))
        self.reply(200, {"path": path, "bytes": size}, event="put", file=path, bytes=size)

    def untar(self) -> None:
        dest = self.query().get("dir", self.cfg.get("home", "/root"))
        Path(dest).mkdir(parents=True, exist_ok=True)
        reader = _StreamReader(self.body_chunks())
        try:
            with tarfile.open(fileobj=reader, mode="r|*") as tar:  # type: ignore[call-overload]
                names = []
                for member in tar:
                    _extract(tar, member, dest)
                    names.append(member.name)
        except (tarfile.TarError, OSError) as exc:
            for _ in reader.rest():
                pass
            self.reply(400, {"error": f"not a usable tar stream: {exc}"}, event="bad_tar")
            return
        self.reply(200, {"dir": dest, "entries": len(names), "bytes": reader.total},
                   event="tar", dir=dest, entries=len(names), bytes=reader.total)

    def get_file(self) -> None:
        path = self.query().get("path", "")
        try:
            size = os.path.getsize(path)
            fh = open(path, "rb")  # noqa: SIM115
        except OSError as exc:
            self.reply(404, {"error": str(exc)}, event="get_missing", file=path)
            return
        with fh:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            while piece := fh.read(CHUNK):
                self.wfile.write(piece)
        self.record(200, event="get", file=path, bytes=size)


class _StreamReader:
    """A file-like view of the request body, for tarfile's streaming mode."""

    def __init__(self, chunks: Any) -> None:
        self.chunks, self.buf, self.total = iter(chunks), b"", 0

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self.buf) < n:
            piece = next(self.chunks, b"")
            if not piece:
                break
            self.total += len(piece)
            self.buf += piece
        out, self.buf = (self.buf, b"") if n < 0 else (self.buf[:n], self.buf[n:])
        return out

    def rest(self) -> Any:
        yield from self.chunks


def serve(kind: str, config_path: str) -> None:
    cfg = json.loads(Path(config_path).read_text())
    os.unlink(config_path)
    handler = AllocHandler if kind == "alloc" else ShellHandler
    handler.cfg = cfg
    server = ThreadingHTTPServer((cfg["host"], int(cfg["port"])), handler)
    server.daemon_threads = True
    print(f"{kind} service on {cfg['host']}:{cfg['port']}", file=sys.stderr, flush=True)
    server.serve_forever()


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: str) -> None:
    """Extract one member with the "tar" filter's rules (no absolute or escaping paths or
    links, no device files). The machine's Python may predate extraction filters (3.11.4)."""
    if hasattr(tarfile, "tar_filter"):
        tar.extract(member, dest, filter="tar")
        return
    root = os.path.realpath(dest)

    def inside(name: str, base: str) -> bool:
        target = os.path.realpath(os.path.join(base, name))
        return target == root or target.startswith(root + os.sep)

    if member.name.startswith("/") or not inside(member.name, root):
        raise tarfile.TarError(f"{member.name} would land outside {dest}")
    if member.isdev():
        raise tarfile.TarError(f"{member.name} is a device file")
    if member.issym() and (member.linkname.startswith("/") or not inside(
            member.linkname, os.path.dirname(os.path.join(root, member.name)))):
        raise tarfile.TarError(f"{member.name} links outside {dest}")
    if member.islnk() and not inside(member.linkname, root):
        raise tarfile.TarError(f"{member.name} links outside {dest}")
    tar.extract(member, dest)


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])

