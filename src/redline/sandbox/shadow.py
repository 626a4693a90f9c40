"""Hide tools (the paper's machine had no netstat, lsof, ss) so they are 'command not found'.

Binding an empty file over a tool is not enough (it would still be found, and fail oddly). For
each binary folder that holds a hidden tool, a shadow folder of symlinks to the real one (bound
elsewhere, read-only) minus the hidden names is bound over it. Shadows are cached on the host
(under the neutral folder, redline.sandbox.hostroot) by the folder's listing, so a sandbox
start costs one directory listing per folder.
This is realism, not security: an agent that looks can still find the real folder.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from redline.sandbox.hostroot import neutral_root

BIN_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin")


def _cache() -> Path:
    """Under the neutral folder where there is one: the shadow's host path is what the
    sandbox's mountinfo shows for the folder it covers (redline.sandbox.hostroot)."""
    root = neutral_root()
    if root is not None:
        return root / "bin"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "redline" / "shadow"


def real_dir(folder: str) -> str:
    """Where the real folder is bound inside (on the sandbox's root tmpfs: /usr is read-only)."""
    return "/." + folder.strip("/").replace("/", "-")  # /usr/bin -> /.usr-bin


def shadow_dir(folder: str, names: list[str], hidden: set[str]) -> Path:
    real = real_dir(folder)
    key = hashlib.sha256(("\0".join(names) + "|" + real + "|" + ",".join(sorted(hidden)))
                         .encode())
    out = _cache() / key.hexdigest()[:16]
    if not out.exists():
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        for name in names:
            if name not in hidden and not (tmp / name).is_symlink():
                os.symlink(f"{real}/{name}", tmp / name)
        try:
            os.rename(tmp, out)
        except OSError:  # another process made it first
            pass
    return out


def shadow_args(hidden: list[str], dirs: tuple[str, ...] = BIN_DIRS) -> list[str]:
    """bubblewrap arguments that hide `hidden` from every binary folder that has one."""
    want = set(hidden)
    args: list[str] = []
    for folder in dirs:
        if os.path.islink(folder) or not os.path.isdir(folder):
            continue
        names = sorted(os.listdir(folder))
        if not want & set(names):
            continue
        shadow = shadow_dir(folder, names, want)
        args += ["--ro-bind", folder, real_dir(folder), "--ro-bind", str(shadow), folder]
    return args
