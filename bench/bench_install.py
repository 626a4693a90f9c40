"""Install benchmark: README's first command's install step, on a fresh clone, empty pip cache.

Target (issue: the prebuilt llama.cpp server): under 2 minutes on the 2-core machine. Needs the
package index reachable (as the install itself does). The clone and the cache are temporary.

Run: .venv/bin/python bench/bench_install.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 120.0


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "redline"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        env = {**os.environ, "PIP_CACHE_DIR": str(Path(tmp) / "pip-cache")}
        t = time.monotonic()
        proc = subprocess.run(["bash", "scripts/install.sh"], cwd=clone, env=env,
                              capture_output=True, text=True)
        seconds = time.monotonic() - t
    if proc.returncode != 0:
        sys.exit(f"install failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    table = Table(title="install on a fresh clone, empty pip cache")
    for col in ("seconds", "target", "met"):
        table.add_column(col)
    table.add_row(f"{seconds:.1f}", f"< {TARGET_S:.0f} s", "yes" if seconds < TARGET_S else "NO")
    Console().print(table)


if __name__ == "__main__":
    main()
