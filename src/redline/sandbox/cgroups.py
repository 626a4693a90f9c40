"""Resource limits through cgroups: v2 where mounted unified, else v1 controllers.

A limit that cannot be applied is reported, never silently skipped.
"""

from __future__ import annotations

import fcntl
import glob
import os
import signal
import time
from pathlib import Path
from typing import Any

ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "pids", "cpu")
_swept = False


def _v2() -> bool:
    return (ROOT / "cgroup.controllers").exists()


class Cgroup:
    def __init__(self, name: str) -> None:
        self.name = name
        self.paths: dict[str, Path] = {}
        self.report: dict[str, Any] = {"version": 2 if _v2() else 1}

    def _make(self, controller: str) -> Path | None:
        base = ROOT if _v2() else ROOT / controller
        path = base / "redline" / self.name
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.report[controller] = {"applied": False, "reason": f"cannot create {path}: {exc}"}
            return None
        self.paths[controller] = path
        return path

    def _write(self, controller: str, entries: list[tuple[str, str]], what: str) -> None:
        path = self._make(controller)
        if path is None:
            return
        try:
            for name, value in entries:
                (path / name).write_text(value)
            self.report[controller] = {"applied": True, "limit": what, "path": str(path)}
        except OSError as exc:
            self.report[controller] = {"applied": False, "reason": f"{path}: {exc}"}

    def apply(self, memory_mb: int | None, pids_max: int | None, cpus: float | None) -> None:
        v2 = _v2()
        sweep_stale()
        if v2:
            try:
                (ROOT / "redline").mkdir(exist_ok=True)
                (ROOT / "redline" / "cgroup.subtree_control").write_text("+memory +pids +cpu")
            except OSError:
                pass
        if memory_mb:
            b = str(memory_mb * 1024 * 1024)
            entries = [("memory.max", b), ("memory.swap.max", "0")] if v2 else \
                [("memory.limit_in_bytes", b)]
            self._write("memory", entries, f"{memory_mb} MiB")
            if not v2 and "memory" in self.paths:
                sw = self.paths["memory"] / "memory.memsw.limit_in_bytes"
                if sw.exists():
                    try:
                        sw.write_text(b)
                    except OSError:
                        pass
        if pids_max:
            self._write("pids", [("pids.max", str(pids_max))], f"{pids_max} processes")
        if cpus:
            quota = str(int(cpus * 100_000))
            entries = [("cpu.max", f"{quota} 100000")] if v2 else \
                [("cpu.cfs_period_us", "100000"), ("cpu.cfs_quota_us", quota)]
            self._write("cpu", entries, f"{cpus} CPUs")

    def add(self, pid: int) -> None:
        for controller, path in self.paths.items():
            try:
                (path / "cgroup.procs").write_text(str(pid))
            except OSError as exc:
                self.report[controller] = {"applied": False,
                                           "reason": f"cannot move pid {pid}: {exc}"}

    def events(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for path in self.paths.values():
            for name in ("memory.failcnt", "memory.events", "pids.events", "memory.oom_control"):
                f = path / name
                if f.exists():
                    try:
                        out[name] = f.read_text().strip()
                    except OSError:
                        pass
        return out

    def remove(self) -> None:
        """Removed at teardown, and with it anything still in it (the sandbox's own processes,
        by PID: one that left its PID namespace's view, or was still being started), in every
        hierarchy it has a folder in: the ones made here, and those another engine made under
        it (Docker makes `redline/<name>/<container>` in each v1 hierarchy it uses)."""
        for path in {*self.paths.values(), *everywhere(self.name)}:
            remove_tree(path)


def everywhere(name: str) -> list[Path]:
    """The folder of cgroup `name` in every hierarchy mounted here."""
    found = {Path(p) for p in glob.glob(str(ROOT / "*" / "redline" / name))}
    found |= {ROOT / "redline" / name} if (ROOT / "redline" / name).is_dir() else set()
    return sorted({p.resolve() for p in found})


def remove_tree(path: Path) -> None:
    """A cgroup folder and the ones below it, deepest first, each emptied of processes."""
    try:
        below = sorted((Path(d) for d, _, _ in os.walk(path)), key=lambda d: -len(d.parts))
    except OSError:
        return
    for folder in below:
        kill_members(folder)
        # A killed member leaves its cgroup only once the kernel has finished its exit, which
        # on a loaded machine takes well over a second: wait for it, boundedly.
        deadline = time.monotonic() + 10
        while True:
            try:
                os.rmdir(folder)
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    break
                kill_members(folder, timeout_s=0.5)  # one that joined meanwhile
                time.sleep(0.02)  # still has (dying) members


# Each sandbox's harness holds a lock named after its cgroup while the sandbox lives (from
# before its cgroup is made until it is removed): a cgroup whose lock is free has no harness.
LOCKS = Path("/run/redline-sandboxes")


def hold(name: str) -> int | None:
    """Take the lock of cgroup `name` for this process (None where locks cannot be made: not
    root, no /run). Released by `release`, or by the kernel when the process dies."""
    try:
        LOCKS.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(LOCKS / f"{name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return None
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def release(name: str, fd: int | None) -> None:
    if fd is None:
        return
    try:
        (LOCKS / f"{name}.lock").unlink(missing_ok=True)
    finally:
        os.close(fd)


def orphaned(name: str) -> bool | None:
    """True: its harness took the lock and died (the lock file is there, nobody holds it);
    None: no lock file (a harness that took none: an earlier version, another tool);
    False: its harness lives."""
    try:
        fd = os.open(LOCKS / f"{name}.lock", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # held: its harness lives
    else:
        return True
    finally:
        os.close(fd)


def members(path: Path) -> list[int]:
    try:
        return [int(x) for x in (path / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def kill_members(path: Path, timeout_s: float = 5.0) -> int:
    """SIGKILL every process in this cgroup (processes a sandbox we started ran: its own
    members, by PID) until it is empty; returns how many were signalled."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while (pids := members(path)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                continue
        time.sleep(0.02)
    return len(killed)


def sweep_stale(min_age_s: float = 60.0) -> int:
    """Finish what harnesses that were killed left (SIGKILL, a lost machine): their sandboxes'
    cgroups, and any process still in one. A sandbox whose harness died while it started can
    outlive it (bubblewrap's die-with-parent is set by each of its processes in turn, and one
    killed in between leaves the next waiting). A cgroup whose lock file no harness holds has
    its members killed and is removed at once (the lock is taken before the cgroup is made);
    one without a lock file only once it is older than `min_age_s` (one being made right now
    is never touched). Once per process; returns the cgroups removed."""
    global _swept
    if _swept:
        return 0
    _swept = True
    return sweep(min_age_s)


def sweep(min_age_s: float = 60.0) -> int:
    """The sweep itself (`sweep_stale` runs it once per process)."""
    removed = 0
    now = time.time()
    names = {Path(p).name for p in glob.glob(str(ROOT / "*" / "redline" / "sb-*"))} | {
        Path(p).name for p in glob.glob(str(ROOT / "redline" / "sb-*"))}
    for name in sorted(names):
        folders = everywhere(name)
        state = orphaned(name)
        try:
            if state is False or (state is None and any(
                    now - p.stat().st_mtime < min_age_s for p in folders)):
                continue
        except OSError:
            continue
        for path in folders:
            remove_tree(path)
        if not any(p.exists() for p in folders):
            removed += 1
            if state:
                (LOCKS / f"{name}.lock").unlink(missing_ok=True)
    return removed
