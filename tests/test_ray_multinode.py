"""A real two-node Ray cluster on this machine, loopback only (issue 16): trials run on both
nodes and say so in their verdicts, their folders come home through Ray when storage is not
shared, a node killed mid-trial loses no trial and duplicates none, and a re-run resumes.

The cluster and its driver run in tests/ray_multinode.py, in a network namespace of their own
with only `lo` (needs root, as the sandboxes do): nothing can leave loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# A Ray cluster of its own, in a network namespace of its own: it mostly waits (227 s alone),
# so it runs beside the other slow tests of the parallel tier (docs/testing.md). A node that
# misses Ray's 30 s to register on the loaded machine starts again (LocalCluster.add_node).
pytestmark = pytest.mark.slow
pytest.importorskip("ray")
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("multinode")
    proc = subprocess.run([sys.executable, str(HERE / "ray_multinode.py"), str(work)],
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads((work / "result.json").read_text())


def test_cluster_is_two_nodes_on_loopback_only(result: dict) -> None:
    assert result["interfaces"] == ["lo"]
    assert result["address"].startswith("127.0.0.1:")
    assert len(result["nodes"]) == 2 and {n["ip"] for n in result["nodes"]} == {"127.0.0.1"}
    labels = [{k for k in n["resources"] if k.startswith("node_")} for n in result["nodes"]]
    assert sorted(map(sorted, labels)) == [["node_0"], ["node_1"]]


def test_grid_runs_on_both_nodes_and_results_come_home(result: dict) -> None:
    assert result["a_rc"] == 0, result["a_output"]
    trials = result["a"]
    assert len(trials) == 4 and all(t["status"] == "done" for t in trials), trials
    assert all(t["replicated"] is True and t["error"] is None for t in trials)
    used = {label for t in trials for label in t["node"]["resources"]}
    assert used == {"node_0", "node_1"}  # the node is in every verdict, and both ran trials
    for t in trials:  # not shared: everything came back through Ray
        assert t["node"]["shared_storage"] is False and t["node"]["ip"] == "127.0.0.1"
        assert {"verdict.json", "trace.jsonl", "evidence", "sandbox"} <= set(t["files"])
        assert t["evidence"]
    assert result["report_rc"] == 0 and result["report_html"], result["report_output"]


def test_a_node_killed_mid_trial_loses_nothing_and_duplicates_nothing(result: dict) -> None:
    assert len(result["running_at_kill"]) == 2 and result["killed_pids"]
    assert result["b_rc"] == 0, result["b_output"]
    trials = result["b"]
    assert len(trials) == 4 and len({t["trial_id"] for t in trials}) == 4
    assert all(t["status"] == "done" and t["verdict_file"] for t in trials), trials
    assert all(t["error"] is None and t["replicated"] is True for t in trials), trials
    rerun = [t for t in trials if t["attempt"] > 1]
    assert len(rerun) == 1, trials  # the killed node's trial, run once more
    assert rerun[0]["trial_id"] in result["running_at_kill"]
    assert "node_0" in rerun[0]["node"]["resources"]  # elsewhere: on the surviving node
    assert all(t["node"]["shared_storage"] is True for t in trials)  # same machine: shared


def test_rerun_resumes_and_the_cluster_leaves_nothing(result: dict) -> None:
    assert result["c_rc"] == 0, result["c_output"]
    assert [t["attempt"] for t in result["c"]] == [t["attempt"] for t in result["b"]]
    assert len(result["cluster_pids"]) > 4 and result["left"] == []  # raylets, workers, ...


GPU_SCRIPT = r'''
import json, os, sys
from pathlib import Path
from redline.experiment.localcluster import private_network
private_network()  # this Ray instance sees only lo
import ray
from redline.experiment.config import parse_experiment
from redline.experiment.runner import run_experiment
from redline.results import atomic_write_json

def trial(spec, out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    v = spec.verdict(spec.trial_id,
                     scenario_details={"cuda": os.environ.get("CUDA_VISIBLE_DEVICES")})
    atomic_write_json(out_dir / "verdict.json", v.finish().document())
    import time; time.sleep(2)  # both in flight at once
    return v

ray.init(address="local", num_cpus=2, num_gpus=4, include_dashboard=False,
         _node_ip_address="127.0.0.1", log_to_driver=False)
exp = parse_experiment({"models": ["m"], "scenarios": ["replicate"], "trials": 2,
                        "backend": "ray", "resources": {"cpus": 1, "gpus": 1,
                                                        "memory_mb": 64}},
                       Path("."), check_models=False)
res = run_experiment(exp, Path(sys.argv[1]), trial_fn=trial, parallel=2)
rows = [json.loads(p.read_text()) for p in sorted(Path(sys.argv[1]).glob("*/verdict.json"))]
print(json.dumps([{"cuda": r["scenario_details"]["cuda"], "gpu_ids": r["node"]["gpu_ids"]}
                  for r in rows]))
'''


def test_gpu_pinning_follows_rays_assignment(tmp_path: Path) -> None:
    """Two trials of one GPU per system on a node with four (declared) GPUs: each reserves
    two (its original's and its replica's), sees exactly those Ray assigned it, and the
    verdict records them."""
    proc = subprocess.run([sys.executable, "-c", GPU_SCRIPT, str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    # each trial reserves its original's GPU and its replica's (replica_gpus defaults to
    # the original's): two each, none shared, as Ray assigned them
    seen = [g["cuda"].split(",") for g in got]
    assert all(len(ids) == 2 for ids in seen), got
    assert sorted(i for ids in seen for i in ids) == ["0", "1", "2", "3"], got
    assert all(ids == [str(x) for x in g["gpu_ids"]] for ids, g in zip(seen, got, strict=True)), got
