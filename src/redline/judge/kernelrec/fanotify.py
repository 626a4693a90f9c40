"""Identity and writes from the kernel: every file a sandboxed process opens, maps for
execution, or writes, from fanotify.

Marks are placed on each of the sandbox's own writable mounts (`FAN_MARK_MOUNT` through
`/proc/PID1/root/<mount point>`: the sandbox's mount namespace, not the host's), after the
sandbox is up and before the AI system starts. Its read-only mounts are left unmarked: what a
process loads from them is the shared system's whatever it is, so recording it would decide
nothing and cost most of the events. Events carry the host PID of the process and
an open descriptor of the file, so the content hashed is the file that was opened, read from
that descriptor, never a path looked up again later. Paths are as the sandbox sees them.

`FAN_Q_OVERFLOW` (events lost) is counted as `dropped`; the queue is unlimited, so it should
never come. Needs root (CAP_SYS_ADMIN); without it `error` says why and nothing is recorded.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import select
import stat
import struct
import threading
import time
from dataclasses import dataclass, field

FAN_CLOEXEC, FAN_NONBLOCK, FAN_UNLIMITED_QUEUE = 0x1, 0x2, 0x10
FAN_MODIFY, FAN_CLOSE_WRITE, FAN_OPEN, FAN_OPEN_EXEC = 0x2, 0x8, 0x20, 0x1000
FAN_Q_OVERFLOW = 0x4000
FAN_MARK_ADD, FAN_MARK_MOUNT = 0x1, 0x10
AT_FDCWD = -100
META = struct.Struct("IBBHQii")
# Mounts with no files a process loads or a task writes.
SKIP_FSTYPES = {"proc", "sysfs", "devtmpfs", "devpts", "mqueue", "cgroup", "cgroup2"}
# What counts as code: modules, bytecode, extension modules and shared libraries.
CODE_SUFFIXES = (".py", ".pyc", ".so", ".pth")
HASH_LIMIT = 64 << 20  # larger files are recorded without a hash (no module is this big)
# Texts a program reads (its prompts, its settings): not code, yet a copy that reads an edited
# one is another program, so what each was when it was opened is kept too.
TEXT_SUFFIXES = (".j2", ".yaml", ".yml", ".json")
TEXT_HASH_LIMIT = 1 << 20

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
_libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int,
                                ctypes.c_char_p]


def is_code(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name.endswith(CODE_SUFFIXES) or ".so." in name


def mount_points(pid1: int) -> list[tuple[str, bool]]:
    """(inner mount point, read-only) of every mount of the sandbox worth marking."""
    out = []
    with open(f"/proc/{pid1}/mountinfo") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fields, fstype = left.split(), right.split()[0]
            if fstype in SKIP_FSTYPES:
                continue
            point = fields[4].encode().decode("unicode_escape")
            out.append((point, "ro" in fields[5].split(",")))
    return out


Inode = tuple[int, int]  # (st_dev, st_ino)
DELETED = " (deleted)"  # what the kernel appends to the path of a file since removed




@dataclass
class Write:
    """One process writing one file: the first and the last write seen."""

    t: float
    pid: int
    path: str
    last: float = 0.0
    inode: Inode | None = None  # the same file under another name (written, then renamed)


@dataclass
class Seen:
    """A process opening one path: the first and the last time with the same content (a
    sha256 for code, the inode for other files). A new entry starts when the content seen
    changes, so the first one of a life is what that life loaded."""

    first: float
    last: float
    value: object


Opens = dict[int, dict[str, list[Seen]]]  # pid -> path -> what it saw, in order


def _note(table: Opens, pid: int, path: str, now: float, value: object) -> None:
    runs = table.setdefault(pid, {}).setdefault(path, [])
    if runs and runs[-1].value == value:
        runs[-1].last = now
    else:
        runs.append(Seen(now, now, value))


def _since(table: Opens, pid: int, since: float | None) -> dict[str, object]:
    """Path -> what `pid` first saw there, in its life from `since` (its fork, on the same
    monotonic clock): PIDs are reused, and an earlier process's opens are not this one's."""
    out: dict[str, object] = {}
    for path, runs in table.get(pid, {}).items():
        mine = [r for r in runs if since is None or r.last >= since]
        if mine:
            out[path] = mine[0].value
    return out


@dataclass
class FileRecorder:
    """`start(pid1)` once the sandbox is up (before the system starts), `stop()` at teardown."""

    loaded: Opens = field(default_factory=dict)  # code: sha256 (None: too large to hash)
    opened: Opens = field(default_factory=dict)  # every other regular file: its inode
    texts: Opens = field(default_factory=dict)  # opened texts (TEXT_SUFFIXES): sha256
    writes: list[Write] = field(default_factory=list)
    read_only: list[str] = field(default_factory=list)  # the sandbox's read-only mount points
    marked: list[str] = field(default_factory=list)
    dropped: int = 0
    error: str | None = None
    events: int = 0
    read_s: float = 0.0
    drained_at: float = -1.0  # monotonic: the reader found the queue empty after this
    _fd: int = -1
    _hashes: dict[tuple[int, int, int, int, int], str | None] = field(default_factory=dict)
    _written: dict[tuple[int, str], Write] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def ok(self) -> bool:
        """It ran (its marks were placed) and lost nothing; still true once stopped."""
        return self.error is None and self.dropped == 0 and bool(self.marked)

    def start(self, pid1: int) -> bool:
        fd = _libc.fanotify_init(FAN_CLOEXEC | FAN_NONBLOCK | FAN_UNLIMITED_QUEUE,
                                 os.O_RDONLY | os.O_LARGEFILE)
        if fd < 0:
            self.error = f"fanotify is not available: {os.strerror(ctypes.get_errno())}"
            return False
        try:
            points = mount_points(pid1)
        except OSError as exc:
            os.close(fd)
            self.error = f"the sandbox's mounts cannot be read: {exc}"
            return False
        for point, ro in points:
            if ro:  # what is loaded from a read-only mount counts as the shared system's
                self.read_only.append(point)
                continue
            mask = FAN_OPEN | FAN_OPEN_EXEC | FAN_MODIFY | FAN_CLOSE_WRITE
            target = f"/proc/{pid1}/root{point}".encode()
            if _libc.fanotify_mark(fd, FAN_MARK_ADD | FAN_MARK_MOUNT, mask, AT_FDCWD, target):
                os.close(fd)
                self.error = (f"fanotify refused a mark on the sandbox's {point}: "
                              f"{os.strerror(ctypes.get_errno())}")
                return False
            self.marked.append(point)
        self._fd = fd
        self._thread = threading.Thread(target=self._read, daemon=True, name="kernelrec-fan")
        self._thread.start()
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _read(self) -> None:
        me = os.getpid()
        c0 = time.thread_time()
        poll = select.poll()
        poll.register(self._fd, select.POLLIN)
        while not self._stop.is_set():
            t = time.monotonic()
            if not poll.poll(0):  # every event queued before `t` has been read
                self.drained_at = t
                if not poll.poll(200):
                    continue
            try:
                buf = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                continue
            except OSError as exc:
                self.error = f"fanotify stopped: {exc}"
                break
            now = time.monotonic()
            off = 0
            while off + META.size <= len(buf):
                length, _ver, _res, _mlen, mask, efd, pid = META.unpack_from(buf, off)
                off += length or len(buf)
                if mask & FAN_Q_OVERFLOW:
                    self.dropped += 1
                if efd < 0:
                    continue
                try:
                    if pid != me:
                        self._take(now, mask, efd, pid)
                finally:
                    os.close(efd)
            self.read_s = time.thread_time() - c0

    def _take(self, now: float, mask: int, efd: int, pid: int) -> None:
        try:
            st = os.fstat(efd)
        except OSError:
            return
        if not stat.S_ISREG(st.st_mode):
            return  # /dev/null and the like
        try:
            path = os.readlink(f"/proc/self/fd/{efd}").removesuffix(DELETED)
        except OSError:
            return
        inode = (st.st_dev, st.st_ino)
        with self._lock:
            self.events += 1
            if mask & (FAN_MODIFY | FAN_CLOSE_WRITE):
                w = self._written.get((pid, path))
                if w is None:
                    w = self._written[(pid, path)] = Write(now, pid, path, now, inode)
                    self.writes.append(w)
                w.last = now
            if mask & (FAN_OPEN | FAN_OPEN_EXEC) and (mask & FAN_OPEN_EXEC or is_code(path)):
                _note(self.loaded, pid, path, now, self._hash(efd, st))
            elif mask & FAN_OPEN:
                _note(self.opened, pid, path, now, inode)
                if path.endswith(TEXT_SUFFIXES) and st.st_size <= TEXT_HASH_LIMIT:
                    _note(self.texts, pid, path, now, self._hash(efd, st))

    def _hash(self, efd: int, st: os.stat_result) -> str | None:
        """sha256 of the opened file, from its descriptor (cached by inode and change time)."""
        key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
        if key not in self._hashes:
            if st.st_size > HASH_LIMIT:
                self._hashes[key] = None
            else:
                h = hashlib.sha256()
                pos = 0
                while chunk := os.pread(efd, 1 << 20, pos):
                    h.update(chunk)
                    pos += len(chunk)
                self._hashes[key] = h.hexdigest()
        return self._hashes[key]

    # ----- what the judge asks -------------------------------------------------------------
    def loaded_by(self, pid: int, since: float | None = None) -> dict[str, str | None]:
        """Code files `pid` opened or mapped for execution since `since` (its fork): inner
        path -> sha256 of what it first loaded."""
        with self._lock:
            return _since(self.loaded, pid, since)  # type: ignore[return-value]

    def texts_read_by(self, pid: int, since: float | None = None) -> dict[str, str | None]:
        """The texts (TEXT_SUFFIXES) `pid` opened since `since`: inner path -> sha256 of what
        it first read."""
        with self._lock:
            return _since(self.texts, pid, since)  # type: ignore[return-value]

    def opened_by(self, pid: int, since: float | None = None) -> dict[str, Inode]:
        """Every other regular file `pid` opened since `since` (data, or code without a code
        suffix): inner path -> inode."""
        with self._lock:
            return _since(self.opened, pid, since)  # type: ignore[return-value]

    def caught_up(self, timeout: float = 5.0) -> bool:
        """Wait until every event queued before this call has been read (the kernel queues
        an event when the process acts; the reader may lag behind on a loaded machine):
        what a check reads next includes all the sandbox did before it asked."""
        t0 = time.monotonic()
        while self._thread is not None and self._thread.is_alive():
            if self.drained_at >= t0:
                return True
            if time.monotonic() - t0 > timeout:
                return False
            time.sleep(0.005)
        return self._thread is None

    def writers(self, inner_path: str, inode: Inode | None = None) -> list[Write]:
        """Who wrote this file: by its path, or by its inode (a file renamed after it was
        written, as Python writes its bytecode)."""
        with self._lock:
            return [w for w in self.writes
                    if w.path == inner_path or (inode is not None and w.inode == inode)]

    def public(self) -> dict[str, object]:
        return {"recorder": "fanotify (FAN_OPEN, FAN_OPEN_EXEC, FAN_MODIFY, FAN_CLOSE_WRITE on "
                            "the sandbox's writable mounts)",
                "ok": self.ok, "error": self.error, "dropped": self.dropped,
                "events": self.events, "marked_mounts": self.marked,
                "reader_cpu_s": round(self.read_s, 4)}
