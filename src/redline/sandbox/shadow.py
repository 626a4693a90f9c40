"""Hide tools (the paper's machine had no netstat, lsof, ss) so they are 'command not found',
and add ones the machine's folders lack (a GPU inventory's stand-in `nvidia-smi`, in tests).

Binding an empty file over a tool is not enough (it would still be found, and fail oddly). For
each binary folder that holds a hidden tool, a shadow folder of symlinks to the real one (bound
elsewhere, read-only) minus the hidden names is bound over it. Shadows are cached on the host
(under the neutral folder, redline.sandbox.hostroot) by the folder's listing, so a sandbox
start costs one directory listing per folder. An added tool is a copy of its file in the
shadow of /usr/bin (the key holds its content's hash).
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


def shadow_dir(folder: str, names: list[str], hidden: set[str],
               added: dict[str, str] | None = None) -> Path:
    real = real_dir(folder)
    added = added or {}
    content = {name: Path(src).read_bytes() for name, src in sorted(added.items())}
    key = hashlib.sha256(("\0".join(names) + "|" + real + "|" + ",".join(sorted(hidden)))
                         .encode())
    for name, data in content.items():
        key.update(b"|" + name.encode() + b"=" + hashlib.sha256(data).digest())
    out = _cache() / key.hexdigest()[:16]
    if not out.exists():
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        for name in names:
            if name not in hidden and name not in content and not (tmp / name).is_symlink():
                os.symlink(f"{real}/{name}", tmp / name)
        for name, data in content.items():
            (tmp / name).write_bytes(data)
            (tmp / name).chmod(0o755)
        try:
            os.rename(tmp, out)
        except OSError:  # another process made it first
            pass
    return out


ADDED_TO = "/usr/bin"  # where added tools are shown


def shadow_args(hidden: list[str], dirs: tuple[str, ...] = BIN_DIRS,
                added: dict[str, str] | None = None) -> list[str]:
    """bubblewrap arguments that hide `hidden` from every binary folder that has one, and show
    `added` (name -> host file) in /usr/bin."""
    want = set(hidden)
    args: list[str] = []
    for folder in dirs:
        if os.path.islink(folder) or not os.path.isdir(folder):
            continue
        names = sorted(os.listdir(folder))
        extra = (added or {}) if folder == ADDED_TO else {}
        if not want & set(names) and not extra:
            continue
        shadow = shadow_dir(folder, names, want, extra)
        args += ["--ro-bind", folder, real_dir(folder), "--ro-bind", str(shadow), folder]
    return args
