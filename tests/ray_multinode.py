"""Driven by test_ray_multinode.py in its own process: everything below runs in a new network
namespace with only `lo`, so nothing it or Ray does can leave loopback.

A two-node Ray cluster (redline.experiment.localcluster, token auth on), then:
  A. a scripted grid with `--backend ray --ray-address`, results brought home through Ray
     (shared_storage = "no"), then `redline report` on the driver's folder;
  B. a grid during which node 1 is killed (its process group and tree) while its trial runs;
  C. the same grid again: it resumes (nothing left to run).
Writes OUT/result.json for the test to check.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil

from redline.experiment.localcluster import LocalCluster, private_network

ROOT = Path(__file__).resolve().parent.parent
CONTROL = ROOT / "controls" / "replicate-positive.yaml"


def grid(path: Path, trials: int, shared: str) -> Path:
    path.write_text("\n".join([
        'name = "multinode"', f'models = ["scripted:{CONTROL}"]', 'scenarios = ["replicate"]',
        f"trials = {trials}", "seed = 3", 'backend = "ray"',
        "[resources]", "cpus = 1", "memory_mb = 1024",
        "[limits]", "max_steps = 20", "time_limit_s = 240",
        "[ray]", f'shared_storage = "{shared}"']) + "\n")
    return path


def redline(cluster: LocalCluster, *args: str, **kw: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "redline.cli", *args], env=cluster.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def rows(out: Path) -> list[dict]:
    db = sqlite3.connect(out / "index.sqlite")
    db.row_factory = sqlite3.Row
    found = [dict(r) for r in db.execute("SELECT trial_id, status, attempt, verdict_json, "
                                         "started_at FROM trials")]
    db.close()
    for r in found:
        v = json.loads(r.pop("verdict_json") or "null") or {}
        r.update(replicated=v.get("replicated"), error=v.get("error"), node=v.get("node"))
        folder = out / r["trial_id"]
        r["files"] = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
        r["evidence"] = (folder / "evidence" / "baseline.json").exists()
        r["verdict_file"] = (folder / "verdict.json").exists()
    return found


def main() -> int:
    work = Path(sys.argv[1])
    result: dict = {"interfaces": private_network()}
    with LocalCluster(cpus_per_node=1, root=work / "cluster") as cluster:
        cluster.add_node()
        cluster.add_node()
        result["nodes"] = cluster.alive_nodes()
        result["address"] = cluster.address

        out_a = work / "a"
        t = time.monotonic()
        proc = redline(cluster, "experiment", "run", str(grid(work / "a.toml", 4, "no")),
                       "--backend", "ray", "--ray-address", cluster.address, "--out", str(out_a))
        result["a_output"] = proc.communicate(timeout=600)[0][-3000:]
        result["a_rc"], result["a_wall_s"] = proc.returncode, time.monotonic() - t
        result["a"] = rows(out_a)
        rep = redline(cluster, "report", str(out_a))
        result["report_output"] = rep.communicate(timeout=300)[0][-2000:]
        result["report_rc"] = rep.returncode
        result["report_html"] = (out_a / "report.html").exists()

        out_b = work / "b"
        spec = grid(work / "b.toml", 4, "auto")
        proc = redline(cluster, "experiment", "run", str(spec), "--backend", "ray",
                       "--ray-address", cluster.address, "--out", str(out_b))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # both nodes busy, for a few seconds
            time.sleep(1)
            if (out_b / "index.sqlite").exists() and sum(
                    r["status"] == "running" for r in rows(out_b)) >= 2:
                time.sleep(5)
                break
        result["running_at_kill"] = [r["trial_id"] for r in rows(out_b)
                                     if r["status"] == "running"]
        result["killed_pids"] = cluster.kill_node(1)
        result["b_output"] = proc.communicate(timeout=600)[0][-3000:]
        result["b_rc"] = proc.returncode
        result["b"] = rows(out_b)

        again = redline(cluster, "experiment", "run", str(spec), "--backend", "ray",
                        "--ray-address", cluster.address, "--out", str(out_b))
        result["c_output"] = again.communicate(timeout=300)[0][-2000:]
        result["c_rc"] = again.returncode
        result["c"] = rows(out_b)
    result["cluster_pids"] = sorted(cluster.pids)
    result["left"] = [p for p in cluster.pids if _alive(p)]
    (work / "result.json").write_text(json.dumps(result, indent=1, default=str))
    return 0


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


if __name__ == "__main__":
    raise SystemExit(main())
