"""Experiment runner benchmark (issue: experiments at scale).

Throughput of a grid with 1, 2 and 4 parallel slots, in trials per minute, and the parallel
efficiency (throughput with k slots / (k x throughput with 1 slot)). Target: at least 80% of
linear up to the core count. The wall time counts everything the user waits for: worker start,
index writes, verdict files.

By default each trial is a fixed-duration dry run (it sleeps), which measures the runner's own
overhead; --real runs the scripted positive control (a real sandbox, AI system, task and judge)
and measures what the machine sustains, which is bounded by its cores.

--ray-nodes 1,2 runs the grid on a Ray cluster of that many nodes on this machine, loopback
only, in a network namespace of its own (root): the same CPUs split over 1 or 2 nodes, so the
figure shows what a second node costs, not a speed-up.

Run: .venv/bin/python bench/bench_experiment.py [--trials N] [--seconds S] [--real]
     [--slots 1,2,4] [--backend local|ray] [--ray-nodes 1,2]
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from redline.experiment.config import parse_experiment  # noqa: E402
from redline.experiment.localcluster import LocalCluster, private_network  # noqa: E402
from redline.experiment.raybackend import init_ray  # noqa: E402
from redline.experiment.runner import run_experiment  # noqa: E402


def experiment(trials: int, seconds: float, real: bool, slots: int) -> dict:
    """One cell of `trials` trials; resources sized so `slots` trials fit on this machine."""
    cores = len(os.sched_getaffinity(0))
    data: dict = {
        "name": f"bench-{slots}", "scenarios": ["replicate"], "trials": trials,
        "resources": {"cpus": min(1.0, cores / slots), "memory_mb": 512},
    }
    if real:
        data["models"] = [f"scripted:{ROOT / 'controls' / 'replicate-positive.yaml'}"]
        data["limits"] = {"max_steps": 20, "time_limit_s": 240}
    else:
        data["models"] = ["dry-bench"]
        data["dry_run"] = {"seconds": seconds}
    return data


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=8, help="trials per measurement")
    ap.add_argument("--seconds", type=float, default=2.0, help="dry-run trial duration")
    ap.add_argument("--real", action="store_true",
                    help="scripted positive control trials instead of dry runs")
    ap.add_argument("--slots", default="1,2,4", help="comma-separated slot counts")
    ap.add_argument("--backend", choices=("local", "ray"), default="local")
    ap.add_argument("--ray-nodes", default="",
                    help="comma-separated node counts of a loopback Ray cluster (e.g. 1,2)")
    args = ap.parse_args()
    if args.ray_nodes:
        return by_nodes(args)
    console = Console()
    cores = len(os.sched_getaffinity(0))
    if args.backend == "ray":
        private_network()  # Ray looks up this machine's address: let it find only lo
    started_ray = init_ray() if args.backend == "ray" else False
    rows = []
    try:
        for slots in (int(s) for s in args.slots.split(",")):
            exp = parse_experiment(experiment(args.trials, args.seconds, args.real, slots),
                                   ROOT, "bench")
            with tempfile.TemporaryDirectory(prefix="redline-bench-") as tmp:
                res = run_experiment(exp, Path(tmp) / "out", backend=args.backend,
                                     parallel=slots)
            if res.errors:
                console.print(f"[red]{res.errors} trials failed with {slots} slots[/]")
            rows.append((slots, res.slots, res.ran, res.wall_s, res.errors))
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    base = rows[0][2] / rows[0][3] / rows[0][0] if rows else 1.0  # per-slot rate at 1 slot
    kind = "scripted positive control" if args.real else f"dry run, {args.seconds:g} s each"
    table = Table(title=f"experiment throughput ({kind}; {args.backend}; {cores} cores)")
    for col in ("slots", "ran in parallel", "trials", "wall (s)", "trials/min", "efficiency",
                "errors"):
        table.add_column(col, justify="right")
    for slots, used, ran, wall, errors in rows:
        rate = ran / wall
        eff = rate / (base * slots) if base else 0.0
        table.add_row(str(slots), str(used), str(ran), f"{wall:.1f}", f"{rate * 60:.1f}",
                      f"{eff:.0%}", str(errors))
    console.print(table)
    if not args.real:
        console.print(f"ideal with {args.seconds:g} s trials: "
                      f"{60 / args.seconds:.1f} trials/min per slot")
    return 0


def by_nodes(args: argparse.Namespace) -> int:
    """Trials/min on a loopback cluster of 1, 2, ... nodes sharing this machine's cores."""
    console = Console()
    cores = len(os.sched_getaffinity(0))
    private_network()
    token = secrets.token_hex(24)
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, RAY_USAGE_STATS_ENABLED="0")
    import ray  # after the token is in the environment: Ray reads it once

    rows = []
    for nodes in (int(n) for n in args.ray_nodes.split(",")):
        with LocalCluster(cpus_per_node=max(1, cores // nodes), token=token) as cluster:
            t_up = time.monotonic()
            for _ in range(nodes):
                cluster.add_node()
            up = time.monotonic() - t_up
            init_ray(cluster.address)
            exp = parse_experiment(experiment(args.trials, args.seconds, args.real, cores),
                                   ROOT, "bench")
            with tempfile.TemporaryDirectory(prefix="redline-bench-") as tmp:
                res = run_experiment(exp, Path(tmp) / "out", backend="ray", parallel=cores)
            ray.shutdown()
            rows.append((nodes, res.ran, res.wall_s, res.errors, up))
    kind = "scripted positive control" if args.real else f"dry run, {args.seconds:g} s each"
    table = Table(title=f"Ray cluster on one machine ({kind}; {cores} cores split over nodes)")
    for col in ("nodes", "trials", "wall (s)", "trials/min", "errors", "cluster up (s)"):
        table.add_column(col, justify="right")
    for nodes, ran, wall, errors, up in rows:
        table.add_row(str(nodes), str(ran), f"{wall:.1f}", f"{ran / wall * 60:.1f}",
                      str(errors), f"{up:.1f}")
    console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
