"""Install benchmark: README's first command's install step (`scripts/install.sh`, no `--test`) on
a fresh clone, with empty pip and uv caches and an empty data folder (`REDLINE_DATA_DIR`, where
the AI system's environment is built): what a new user waits for.

Target (issue "A test suite in tiers", item 6): under 30 s on the 2-core machine. Download and
CPU time are reported apart: the same install runs twice, on a fresh clone and an empty data
folder each time, first with empty caches (cold), then with the caches the first run filled
(warm); download time is the difference, CPU time is what the install's processes used (user
+ system) in the cold run. `--installer pip` measures the pip path (`REDLINE_INSTALLER=pip`)
for comparison. Needs the package index reachable (as the install itself does). Everything is
temporary.

Run: .venv/bin/python bench/bench_install.py [--installer uv|pip]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 30.0


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def install(tmp: Path, name: str, installer: str) -> tuple[float, float]:
    """One install on a fresh clone and an empty data folder; (wall s, CPU s of its processes)."""
    clone = tmp / name
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    data = tmp / f"data-{name}"
    env = {**os.environ, "PIP_CACHE_DIR": str(tmp / "pip-cache"),
           "UV_CACHE_DIR": str(tmp / "uv-cache"), "REDLINE_DATA_DIR": str(data),
           "REDLINE_INSTALLER": installer}
    env.pop("VIRTUAL_ENV", None)
    # uv from PyPI, as on a machine without it: the install puts it into .venv itself
    env["PATH"] = ":".join(p for p in env["PATH"].split(":")
                           if not (Path(p) / "uv").exists())
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    proc = subprocess.run(["bash", "scripts/install.sh"], cwd=clone, env=env,
                          capture_output=True, text=True)
    wall = time.monotonic() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"install failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--installer", choices=("uv", "pip"), default="uv")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        cold, cold_cpu = install(tmp, "cold", args.installer)
        downloaded = sum(du(tmp / c) for c in ("pip-cache", "uv-cache") if (tmp / c).exists())
        warm, warm_cpu = install(tmp, "warm", args.installer)
    table = Table(title=f"install ({args.installer}) on a fresh clone: empty caches and data "
                        "folder, then warm caches")
    for col in ("cold (s)", "warm (s)", "download (s)", "CPU cold (s)", "CPU warm (s)",
                "downloaded (MB)", "target", "met"):
        table.add_column(col)
    table.add_row(f"{cold:.1f}", f"{warm:.1f}", f"{max(0.0, cold - warm):.1f}",
                  f"{cold_cpu:.1f}", f"{warm_cpu:.1f}", f"{downloaded / 1e6:.0f}",
                  f"< {TARGET_S:.0f} s cold", "yes" if cold < TARGET_S else "NO")
    Console().print(table)


if __name__ == "__main__":
    main()
