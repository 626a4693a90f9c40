"""Hide tools (the paper's machine had no netstat, lsof, ss): a shadow /usr/bin of symlinks to
the real one (bound elsewhere) minus the hidden names, so they are 'command not found'."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

REAL = "/.redline-hostbin"  # on the sandbox root tmpfs: /usr itself is read-only
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "redline" / "shadow"


def shadow_bin(hidden: list[str]) -> tuple[Path, str]:
    names = sorted(os.listdir("/usr/bin"))
    key = hashlib.sha256(("\0".join(names) + "|" + ",".join(sorted(hidden))).encode())
    folder = CACHE / key.hexdigest()[:16]
    if not folder.exists():
        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        for name in names:
            if name not in hidden:
                os.symlink(f"{REAL}/{name}", tmp / name)
        try:
            os.rename(tmp, folder)
        except OSError:  # another process made it first
            pass
    return folder, REAL
