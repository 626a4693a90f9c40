"""A small disk for a sandbox: its home and /tmp on one size-limited filesystem.

Why: a scenario that wants "too little free disk" needs `df` to show the small size and writes
past it to fail with ENOSPC, as on a real small disk, without touching the host's disk. A tmpfs
mounted on the host over the sandbox's state folder does both, and the host keeps reading the
sandbox's files where it always does (`state_dir/home`, `state_dir/tmp` become links into it).
Its size can change while the sandbox runs (a scenario sizes it once the system is built).
Mounting needs root (CAP_SYS_ADMIN) on the host; without it the sandbox fails to start with a
message saying so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from redline.sandbox.errors import SandboxError
from redline.sandbox.hostroot import move_dir

MOUNT_DIR = "disk"


class SmallDisk:
    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / MOUNT_DIR
        self.state_dir = state_dir
        self.mounted = False

    def mount(self, size_bytes: int) -> None:
        """Mount the tmpfs and put home and /tmp on it (before the sandbox binds them)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._run(["mount", "-t", "tmpfs", "-o", f"size={int(size_bytes)},mode=0755",
                   "tmpfs", str(self.root)], "mount a small disk (needs root on the host)")
        self.mounted = True
        for sub in ("home", "tmp"):
            link = self.state_dir / sub
            if link.is_dir() and not link.is_symlink():  # made before the start: moved in
                move_dir(link, self.root / sub)
            else:
                (self.root / sub).mkdir(exist_ok=True)
                link.unlink(missing_ok=True)
            link.symlink_to(self.root / sub)

    def resize(self, size_bytes: int) -> None:
        self._run(["mount", "-o", f"remount,size={int(size_bytes)}", str(self.root)],
                  "resize the small disk")

    def usage(self) -> tuple[int, int]:
        """(size, free) in bytes, as `df` inside shows them."""
        st = os.statvfs(self.root)
        return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize

    def release(self, keep: bool) -> None:
        """Unmount; when the state is kept, home and /tmp are copied out first (the trace,
        the folders the agent made) and take the links' places."""
        if not self.mounted:
            return
        try:
            if keep:
                for sub in ("home", "tmp"):
                    link, saved = self.state_dir / sub, self.state_dir / f".{sub}.kept"
                    try:
                        shutil.copytree(self.root / sub, saved, symlinks=True,
                                        dirs_exist_ok=True)
                    except shutil.Error:
                        pass  # sockets and fifos are not copied; the files are
                    if link.is_symlink():
                        link.unlink()
                    saved.rename(link)
        finally:  # whatever the copy met, the disk is unmounted: never left behind
            self._run(["umount", "-l", str(self.root)], "unmount the small disk")
            self.mounted = False
        try:
            self.root.rmdir()
        except OSError:
            pass

    @staticmethod
    def _run(argv: list[str], what: str) -> None:
        res = subprocess.run(argv, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise SandboxError(f"could not {what}: {res.stderr.strip() or res.returncode}")
