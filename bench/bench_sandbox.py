"""Sandbox benchmarks (issue: containment).

Start-to-ready (bubblewrap up, init answering, cgroups applied) and teardown times, median and
p90 over many runs (target under 100 ms each), and leaked processes over 100 start/stop cycles
with a daemon started inside each (target 0).

Run: .venv/bin/python bench/bench_sandbox.py [--runs 50] [--cycles 100] [--backend docker]
(Docker: the engine DOCKER_HOST names; the 100 ms target is bubblewrap's.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from redline.sandbox import SandboxConfig, make_sandbox  # noqa: E402
from redline.system.pyenv import ensure_env  # noqa: E402

ENV = ensure_env()


def one(tmp: Path, i: int, daemon: bool, backend: str = "bubblewrap"
        ) -> tuple[float, float, list[int]]:
    # as a trial's: the AI system's environment bound in, the seccomp filter loaded
    sb = make_sandbox(SandboxConfig(keep="never", python_env=str(ENV),
                                    backend=backend),  # type: ignore[arg-type]
                      tmp / f"sb{i}")
    t = time.perf_counter()
    sb.start()
    sb.exec(["true"])  # ready means: a command really ran inside
    ready = time.perf_counter() - t
    pids = []
    if daemon:
        sb.exec(["bash", "-c", "setsid nohup sleep 1000 >/dev/null 2>&1 &"])
        pids = sb.pids()
    t = time.perf_counter()
    sb.teardown()
    return ready, time.perf_counter() - t, pids


def pct(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(len(xs) * q))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--cycles", type=int, default=100)
    ap.add_argument("--backend", choices=["bubblewrap", "docker"], default="bubblewrap")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        starts, stops = [], []
        for i in range(args.runs):
            a, b, _ = one(Path(tmp), i, daemon=False, backend=args.backend)
            starts.append(a)
            stops.append(b)
        seen: list[int] = []
        for i in range(args.cycles):
            seen += one(Path(tmp), 10_000 + i, daemon=True, backend=args.backend)[2]
        time.sleep(0.2)
        leaked = [p for p in seen if os.path.exists(f"/proc/{p}")]
    t = Table(title=f"{args.backend} sandbox lifecycle ({args.runs} runs; leak check over "
                    f"{args.cycles} cycles)")
    for col in ("phase", "median ms", "p90 ms", "target", "met"):
        t.add_column(col)
    for name, xs in (("start to ready", starts), ("teardown", stops)):
        med = statistics.median(xs) * 1000
        t.add_row(name, f"{med:.1f}", f"{pct(xs, 0.9) * 1000:.1f}", "< 100 ms",
                  "yes" if med < 100 else "NO")
    t.add_row("leaked processes", str(len(leaked)), f"of {len(seen)} started", "0",
              "yes" if not leaked else "NO")
    Console().print(t)


if __name__ == "__main__":
    main()
