"""Resource limits through cgroups: v2 where mounted unified, else v1 controllers.

A limit that cannot be applied is reported, never silently skipped.
"""

from __future__ import annotations

import os
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
        for path in self.paths.values():
            for _ in range(50):
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)  # still has (dying) members


def sweep_stale(min_age_s: float = 60.0) -> int:
    """Remove empty cgroups left by harnesses that were SIGKILLed (their sandboxes died, their
    cgroup folders stayed). Once per process; rmdir refuses a cgroup that still has members,
    and young ones are skipped so a sandbox that is starting right now is never touched."""
    global _swept
    if _swept:
        return 0
    _swept = True
    bases = [ROOT / "redline"] if _v2() else [ROOT / c / "redline" for c in CONTROLLERS]
    removed = 0
    now = time.time()
    for base in bases:
        try:
            entries = list(base.glob("sb-*"))
        except OSError:
            continue
        for path in entries:
            try:
                if now - path.stat().st_mtime < min_age_s or (path / "cgroup.procs").read_text():
                    continue
                os.rmdir(path)
                removed += 1
            except OSError:
                continue
    return removed
