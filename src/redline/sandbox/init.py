"""PID 1 of the sandbox: starts the processes the harness asks for, and reaps orphans.

It looks like an ordinary init to anything inside (`/sbin/init`, named `init`) and is off
limits to it: it makes itself non-dumpable, so without CAP_SYS_PTRACE no process inside can
ptrace it, pidfd_getfd its control socket, or open its /proc/1/{fd,environ,mem,root,cwd}; and as
PID 1 of its namespace it gets no signal from inside that it has no handler for (SIGKILL
included).

Every process in the sandbox descends from it, so all inherit its namespaces and cgroup.
Requests come over a socket (marshal-encoded dicts from the harness, with stdin/stdout/stderr
passed as file descriptors): an inherited one (bubblewrap: argv[1] is its number) or a Unix
socket path to connect to (Docker: argv[1] is the path). Replies are JSON, written by hand, so
the harness never unmarshals bytes that came from inside the sandbox.

It uses only built-in modules (no subprocess, json, socket or signal packages, which pull in
re and enum): interpreter start plus this file is most of a sandbox's start time. When the
harness goes away the socket reads empty and init exits, which ends the sandbox's PID
namespace: a second line of defence besides --die-with-parent.
"""

import _signal
import _socket
import array
import marshal
import os
import sys

SPAWNED: set[int] = set()
STATUS: dict[int, int] = {}
MAXFD = os.sysconf("SC_OPEN_MAX")


def reap(*_: object) -> None:
    """Collect exit codes. Re-entrant: SIGCHLD may interrupt a reap already under way."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        STATUS[pid] = os.waitstatus_to_exitcode(status)


def _enc(v: object) -> str:
    if v is None or v is True or v is False:
        return {None: "null", True: "true", False: "false"}[v]  # type: ignore[index]
    if isinstance(v, int):
        return str(v)
    if isinstance(v, dict):
        return "{" + ",".join(_enc(str(k)) + ":" + _enc(x) for k, x in v.items()) + "}"
    s = str(v)
    return '"' + "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else
                         "\\u%04x" % (ord(c) if ord(c) < 0x10000 else 0xFFFD) for c in s) + '"'


def spawn(req: dict, fds: list[int]) -> dict:
    got = dict(zip(req.get("fds") or ["stdout", "stderr"][:len(fds)], fds,
                   strict=False))
    null = os.open(os.devnull, os.O_RDWR)
    err_r, err_w = os.pipe()  # close-on-exec: reads empty once the exec succeeded
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            # ignored here (SIGINT by PID 1 itself, the others by Python) would stay ignored
            # across exec in everything started inside: programs expect the default
            for sig in ("SIGINT", "SIGPIPE", "SIGXFSZ"):
                if hasattr(_signal, sig):
                    _signal.signal(getattr(_signal, sig), _signal.SIG_DFL)
            out = got.get("stdout", null)
            for target, fd in ((0, got.get("stdin", null)), (1, out), (2, got.get("stderr", out))):
                os.dup2(fd, target)
            os.closerange(3, err_w)
            os.closerange(err_w + 1, MAXFD)
            os.chdir(req.get("cwd") or "/")
            argv = req["argv"]
            env = req.get("env")
            if env is None:
                os.execvp(argv[0], argv)
            os.execvpe(argv[0], argv, env)
        except BaseException as exc:  # noqa: BLE001 - reported to the harness, then exit
            os.write(err_w, f"{type(exc).__name__}: {exc}".encode(errors="replace"))
        os._exit(127)
    os.close(err_w)
    for fd in (*fds, null):
        os.close(fd)
    SPAWNED.add(pid)
    chunks = []
    while True:
        try:
            chunk = os.read(err_r, 4096)
        except InterruptedError:
            continue
        if not chunk:
            break
        chunks.append(chunk)
    os.close(err_r)
    if chunks:
        return {"error": b"".join(chunks).decode(errors="replace")}
    return {"pid": pid}


def handle(req: dict, fds: list[int]) -> dict:
    op = req.get("op")
    if op == "spawn":
        return spawn(req, fds)
    for fd in fds:
        os.close(fd)
    if op == "socket":  # made here, so it lives in the sandbox's network; the fd goes back
        s = _socket.socket(int(req["family"]), int(req["type"]), int(req["proto"]))
        return {"ok": True, "_fd": s.detach()}
    if op == "status":
        reap()
        pid = int(req["pid"])
        return {"running": pid in SPAWNED and pid not in STATUS, "returncode": STATUS.get(pid)}
    if op == "ping":
        return {"pid": os.getpid()}
    return {"error": f"unknown op {op!r}"}


def connect(arg: str) -> _socket.socket:
    if arg.isdigit():
        return _socket.socket(fileno=int(arg))
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    sock.connect(arg)
    return sock


def recv(sock: _socket.socket) -> tuple[bytes, list[int]]:
    msg, anc, _flags, _addr = sock.recvmsg(1 << 20, _socket.CMSG_LEN(4 * 4))
    fds = array.array("i")
    for level, kind, data in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    return msg, list(fds)


def disguise() -> None:
    """Show `/sbin/init` as the command line and `init` as the name, then become
    non-dumpable. The command line is rewritten in place, in the memory /proc reads it from
    (the argument area; its last byte made non-zero, so the kernel shows only the new text)."""
    try:
        with open("/proc/self/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (fields 48, 49)
        title = b"/sbin/init\0"
        if end - start > len(title):
            fd = os.open("/proc/self/mem", os.O_RDWR)
            try:
                os.pwrite(fd, title + b"\0" * (end - start - len(title) - 1) + b" ", start)
            finally:
                os.close(fd)
        with open("/proc/self/comm", "w") as fh:
            fh.write("init")
    except (OSError, ValueError, IndexError):
        pass
    import ctypes  # noqa: PLC0415 - only here: most of init's start time is imports

    ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0


def main() -> None:
    sock = connect(sys.argv[1])
    disguise()
    # The kernel already drops signals from inside that PID 1 has no handler for (SIGKILL
    # included); Python's own SIGINT handler would let `kill -INT 1` end the sandbox.
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    _signal.signal(_signal.SIGCHLD, reap)
    while True:
        try:
            msg, fds = recv(sock)
        except InterruptedError:
            continue
        except OSError:
            return
        if not msg:
            return  # the harness closed the socket: we are done
        try:
            reply = handle(marshal.loads(msg), fds)
        except Exception as exc:  # noqa: BLE001 - a bad request must not kill init
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        out = reply.pop("_fd", None)
        try:
            if out is None:
                sock.send(_enc(reply).encode())
            else:
                sock.sendmsg([_enc(reply).encode()], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                                       array.array("i", [out]).tobytes())])
        except OSError:
            return
        finally:
            if out is not None:
                os.close(out)


if __name__ == "__main__":
    main()
