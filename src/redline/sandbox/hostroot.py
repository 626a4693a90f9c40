"""Where the host keeps what a sandbox shows, at paths that name nothing.

Inside, every mountinfo's root column (what `findmnt` prints in brackets) shows, for each bind
mount, the path of its source within the source's filesystem: a bind of a bind still shows
the original path. A trial's home under `runs/` in the checkout, an environment beside the
harness's venv (`.../share/redline/envs/...`) or a shadow folder in `~/.cache/redline` would
name the checkout, the trial and the harness. So, run as root, the host keeps every source
under one neutral folder, `/var/lib/userdata` (`NEUTRAL_ROOT`):

    envs/<hash>          the system's Python environments (redline.system.pyenv)
    bin/<hash>           shadow binary folders of hidden tools (redline.sandbox.shadow)
    opt/<hash>           host folders a trial binds in (an engine binary's own folder)
    <sandbox id>/        a running sandbox's home and /tmp, moved into the trial's folder
                         at teardown (the trial folder's `home` and `tmp` link here meanwhile);
                         the harness holds a lock on it while it runs, so the store of one
                         that was SIGKILLed is moved back (or deleted) by the next one

A trial folder on another filesystem (a separate volume, a tmpfs /tmp) keeps its sandboxes'
stores in `.userdata` at the top of that filesystem instead, which shows as `/.userdata/<id>`.

Without root (or where the folder cannot be made) sources stay where they were; the agent is
then a mapped user in a user namespace anyway, and the audit lists what shows as known.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import re
import shutil
import time
from pathlib import Path

log = logging.getLogger("redline.sandbox")
NEUTRAL_ROOT = Path("/var/lib/userdata")
AREAS = ("home", "tmp")
_OWNER, _LOCK = ".owner", ".lock"  # beside home and tmp: never inside the sandbox
_STORE = re.compile(r"[0-9a-f]{10}")
_swept: set[Path] = set()  # store roots swept by this process


def neutral_root() -> Path | None:
    """The neutral folder, made on first use; None where it cannot be used (not root)."""
    if os.geteuid() != 0:
        return None
    try:
        NEUTRAL_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("cannot use %s (%s): the sandbox's mounts will show host paths",
                    NEUTRAL_ROOT, exc)
        return None
    return NEUTRAL_ROOT


def sandbox_store(state_dir: Path, sandbox_id: str) -> Path | None:
    """Where a sandbox's home and /tmp live while it runs: `<store root>/<id>`, on the state
    folder's filesystem, so that moving them back at teardown is a rename and the trace's hard
    link into the trial folder holds. None without root."""
    root = store_root(state_dir)
    if root is None:
        return None
    if root not in _swept:
        _swept.add(root)
        sweep(root)
    return root / sandbox_id


def store_root(state_dir: Path) -> Path | None:
    """`NEUTRAL_ROOT` where the state folder is on its filesystem; else `.userdata` at the top
    of the state folder's own filesystem (a separate volume, a tmpfs /tmp). The root column
    shows a path within the filesystem, so the mounts then show `/.userdata/<id>/home`: a
    neutral path again, never the trial's folder. None without root, or where that folder
    cannot be made (then the mounts show the trial's folder, and a warning says so)."""
    root = neutral_root()
    if root is None:
        return None
    probe = state_dir
    while not probe.exists():
        probe = probe.parent
    dev = os.stat(probe).st_dev
    if dev == os.stat(root).st_dev:
        return root
    top = probe.resolve()
    while top.parent != top and os.stat(top.parent).st_dev == dev:
        top = top.parent
    other = top / ".userdata"
    try:
        other.mkdir(mode=0o755, exist_ok=True)
    except OSError as exc:
        log.warning("cannot make %s (%s): the sandbox's home and /tmp are bound from the "
                    "trial's folder, which its mounts show", other, exc)
        return None
    return other


def open_store(store: Path, state_dir: Path) -> int:
    """Make the store and hold its lock while the sandbox runs; it records whose it is. The
    lock is held before it is in place (made under another name, then renamed), so a sweep
    never finds the lock of a live store free."""
    store.mkdir(mode=0o755, parents=True, exist_ok=True)
    (store / _OWNER).write_text(str(state_dir))
    making = store / f"{_LOCK}.{os.getpid()}"
    fd = os.open(making, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    making.rename(store / _LOCK)
    return fd


def move_dir(src: Path, dst: Path) -> None:
    """`src` becomes `dst` (which must not exist): a rename where one filesystem and one mount
    allow it, else a copy that is checked against the original before the original goes
    (a bind mount of the same filesystem refuses a rename with EXDEV too). Raises OSError
    with `dst` left out, and `src` untouched, if it cannot."""
    try:
        src.rename(dst)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    try:
        shutil.copytree(src, dst, symlinks=True)
        missing = _listing(src) - _listing(dst)
        if missing:
            raise OSError(errno.EIO, f"the copy of {src} lacks {sorted(missing)[:3]}")
    except OSError:
        shutil.rmtree(dst, ignore_errors=True)
        raise
    shutil.rmtree(src, ignore_errors=True)


def _listing(root: Path) -> set[tuple[str, int]]:
    """(relative path, size) of every entry under `root`, links not followed."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            out.add((str(path.relative_to(root)), st.st_size if path.is_file() and
                     not path.is_symlink() else 0))
    return out


def close_store(store: Path, state_dir: Path, keep: bool) -> None:
    """Kept: home and /tmp move back into the state folder, in place of its links; then the
    store goes (what no link names is kept by nobody). Nothing is removed before what replaces
    it exists: each area is moved beside its link first (`move_dir`: a rename, or a checked
    copy across filesystems or bind mounts), and only then takes the link's place. A move that
    fails leaves the store and the link, and says so."""
    moved = True
    for sub in AREAS:
        here, live = state_dir / sub, store / sub
        if not keep or not live.exists():
            continue
        try:
            if here.is_symlink() and os.readlink(here) == str(live):
                landing = state_dir / f".{sub}.moving"
                shutil.rmtree(landing, ignore_errors=True)
                move_dir(live, landing)
                here.unlink()
                landing.rename(here)  # one folder: a rename
        except OSError as exc:
            moved = False
            log.warning("%s stays at %s (%s)", sub, live, exc)
    if not keep or moved:
        shutil.rmtree(store, ignore_errors=True)


def sweep(root: Path) -> None:
    """Finish the teardown of stores whose harness died (their lock is free): kept in their
    trial's folder where it still links to them, deleted otherwise."""
    for store in root.iterdir():
        if not _STORE.fullmatch(store.name):
            continue
        try:  # a store without its lock yet is being made (or an old one: a minute old first)
            fd = os.open(store / _LOCK, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            try:
                if time.time() - store.stat().st_mtime < 60:
                    continue
                fd = os.open(store / _LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                continue
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # in use
        try:
            owner = Path((store / _OWNER).read_text())
            close_store(store, owner, keep=any(
                (owner / sub).is_symlink() for sub in AREAS))
        except OSError:
            shutil.rmtree(store, ignore_errors=True)
        finally:
            os.close(fd)


def staged(folder: str | Path) -> Path:
    """A copy of a host folder under the neutral root (hard links where the filesystem
    allows, else copies), made once per folder and content; the folder itself without root
    or when it is already under the root."""
    root = neutral_root()
    src = Path(os.path.realpath(folder))
    if root is None or src.is_relative_to(root) or not src.exists():
        return src  # a missing source: bubblewrap says so, naming it
    entries = list(os.scandir(src)) if src.is_dir() else []
    listing = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in entries)
    key = hashlib.sha256(repr((str(src), src.stat().st_mtime_ns, listing)).encode())
    out = root / "opt" / key.hexdigest()[:16]
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}")
        _remove(tmp)  # left by a harness that died with this PID
        if src.is_dir():
            copy_tree(src, tmp)
        else:
            link_or_copy(str(src), str(tmp))
        try:
            tmp.rename(out)
        except OSError:  # another process made it first
            _remove(tmp)
    return out


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def link_or_copy(src: str, dst: str) -> None:
    """A hard link (no space, no time), a copy where linking fails (another filesystem)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, symlinks=True, copy_function=link_or_copy)
