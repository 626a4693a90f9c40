"""Experiment grids: config validation, parallel local runs, crash and resume, summary.

Trials here are fakes (a sleep and a verdict derived from model/scenario/seed), so the tests
check the runner and the results store, not models; the scripted-engine grid lives with trial.py.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import ROOT
from typer.testing import CliRunner

from redline.contracts.rates import wilson
from redline.experiment.cli import app
from redline.experiment.config import ExperimentError, expand, load_experiment, parse_experiment
from redline.experiment.dryrun import expected_verdict
from redline.experiment.runner import Listener, local_slots, machine_capacity, run_experiment
from redline.experiment.store import Store, StoreBusy, load_rows
from redline.experiment.summary import summarize
from redline.results import atomic_write_json
from redline.trial import TrialSpec, Verdict

GRID = {
    "name": "grid",
    "models": ["dry-a", {"model": "dry-b", "name": "bee"}],
    "scenarios": ["replicate", "shutdown"],
    "trials": 3,
    "seed": 10,
    "resources": {"cpus": 0.5, "memory_mb": 256},
}


def grid(**over: Any) -> dict[str, Any]:
    return {**GRID, **over}


def write_toml(path: Path, seconds: float, parallel: int = 2, **extra: str) -> Path:
    lines = ['name = "grid"', 'models = ["dry-a", { model = "dry-b", name = "bee" }]',
             'scenarios = ["replicate", "shutdown"]', "trials = 3", "seed = 10",
             f"parallel = {parallel}", *(f"{k} = {v}" for k, v in extra.items()),
             "[resources]", "cpus = 0.5", "memory_mb = 256", "[dry_run]", f"seconds = {seconds}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def fake_trial(spec: TrialSpec, out_dir: Path) -> Verdict:
    """A fast stand-in for run_trial with the same contract: writes verdict.json, returns it."""
    t0 = time.time()
    time.sleep(0.3)
    verdict = Verdict(trial_id=spec.trial_id or out_dir.name, model=spec.model,
                      scenario=spec.scenario, seed=spec.seed, duration_s=0.3,
                      scenario_details={"t0": t0, "t1": time.time(), "pid": os.getpid()},
                      **expected_verdict(spec.model, spec.scenario, spec.seed))
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "verdict.json", verdict.document())
    return verdict


def dies_once(spec: TrialSpec, out_dir: Path) -> Verdict:
    """Kills its own worker on the first attempt: the runner must queue the trial again."""
    marker = out_dir.parent / f".died-{spec.trial_id}"
    if not marker.exists():
        marker.write_text("x")
        os._exit(3)
    return fake_trial(spec, out_dir)


def raises(spec: TrialSpec, out_dir: Path) -> Verdict:
    raise RuntimeError("boom")


def check_grid(out: Path, n: int = 12) -> list[dict[str, Any]]:
    """Every trial exactly once, done, with the verdict its (model, scenario, seed) implies."""
    rows = load_rows(out).rows
    ids = [r["trial_id"] for r in rows]
    assert len(ids) == n and len(set(ids)) == n
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == sorted(ids)
    for row in rows:
        assert row["status"] == "done", row
        on_disk = json.loads((out / row["trial_id"] / "verdict.json").read_text())
        assert on_disk == row["verdict"].document()
        index = int(row["trial_id"].rsplit("--", 1)[1])
        want = expected_verdict(on_disk["model"], row["scenario"], 10 + index)
        assert {k: on_disk[k] for k in want} == want
        assert on_disk["trial_id"] == row["trial_id"]
    assert not list(out.rglob("*.tmp"))
    return rows


# ---------------------------------------------------------------- config


def test_toml_and_yaml_load(tmp_path: Path) -> None:
    exp = load_experiment(write_toml(tmp_path / "e.toml", 0.1))
    assert [m.model for m in exp.models] == ["dry-a", "dry-b"] and exp.parallel == 2
    (tmp_path / "e.yaml").write_text(json.dumps(grid(dry_run={"seconds": 0})))
    assert load_experiment(tmp_path / "e.yaml").trials == 3


def test_example_file_is_valid() -> None:
    exp = load_experiment(ROOT / "examples" / "experiment.toml")
    assert exp.dry_run is None and len(expand(exp)) >= 4
    for m in exp.models:  # relative to the file, resolved to paths that exist
        assert Path(m.model.split(":", 1)[1]).is_file()


@pytest.mark.parametrize("bad, where", [
    ({"trials": 0}, "trials"),
    ({"models": []}, "models"),
    ({"scenarios": ["replicat"]}, "unknown scenario 'replicat'"),
    ({"colour": "red"}, "colour"),
    ({"limits": {"max_step": 3}}, "limits.max_step"),
    ({"resources": {"cpus": "lots"}}, "resources.cpus"),
    ({"backend": "slurm"}, "backend"),
    ({"models": ["dry-a", "dry-a"]}, "share the name 'dry-a'"),
    ({"dry_run": None, "models": ["scripted:/nonexistent.yaml"]}, "models.0.model"),
])
def test_broken_config_says_where(bad: dict[str, Any], where: str, tmp_path: Path) -> None:
    data = grid(**{"dry_run": {"seconds": 0}, **bad})
    if data["dry_run"] is None:
        del data["dry_run"]
    with pytest.raises(ExperimentError) as err:
        parse_experiment(data, tmp_path, "x.toml")
    assert where in str(err.value) and "x.toml" in str(err.value)


def test_cli_rejects_broken_file(tmp_path: Path) -> None:
    (tmp_path / "e.toml").write_text("models = [\n")
    res = CliRunner().invoke(app, ["run", str(tmp_path / "e.toml")])
    assert res.exit_code == 2 and "cannot parse" in res.output


def test_trial_ids_unique_stable_and_seeded(tmp_path: Path) -> None:
    exp = parse_experiment(grid(dry_run={}), tmp_path)
    jobs = expand(exp)
    assert len({j.trial_id for j in jobs}) == 12
    assert [j.trial_id for j in jobs] == [j.trial_id for j in expand(exp)]
    assert jobs[0].trial_id == "dry-a--replicate--000" and jobs[-1].spec.seed == 12
    assert all(j.spec.trial_id == j.trial_id for j in jobs)


def test_slots_follow_resources() -> None:
    cap = machine_capacity()
    exp = parse_experiment(grid(dry_run={}, resources={"cpus": cap.total_cpus, "memory_mb": 64}),
                           Path("."))
    assert local_slots(expand(exp), cap, parallel=8) == 1
    exp = parse_experiment(grid(dry_run={}, resources={"cpus": 0.25, "memory_mb": 64}), Path("."))
    assert local_slots(expand(exp), cap, parallel=3) == 3


def test_wilson() -> None:
    """One interval for the summary and the report: exact at 0 of n and n of n."""
    r = wilson(0, 0)
    assert (r.lo, r.hi) == (0.0, 1.0)
    r = wilson(0, 10)
    assert r.lo == 0.0 and abs(r.hi - 0.2775) < 1e-3
    r = wilson(9, 10)
    assert abs(r.lo - 0.5958) < 1e-3 and abs(r.hi - 0.9821) < 1e-3
    assert wilson(10, 10).hi == 1.0 and wilson(10, 10).lo > 0.69


# ---------------------------------------------------------------- local runs


class Recorder(Listener):
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def started(self, job: Any) -> None:
        self.events.append(("started", job.trial_id))

    def finished(self, job: Any, verdict: Verdict, status: str) -> None:
        self.events.append((status, job.trial_id))

    def requeued(self, job: Any, reason: str) -> None:
        self.events.append(("requeued", job.trial_id))


def test_local_grid_in_parallel_then_resume_is_a_no_op(tmp_path: Path) -> None:
    exp = parse_experiment(grid(), tmp_path, check_models=False)
    rec = Recorder()
    res = run_experiment(exp, tmp_path / "out", parallel=2, trial_fn=fake_trial, listener=rec)
    assert res.ran == 12 and res.complete and res.errors == 0 and res.slots == 2
    rows = check_grid(tmp_path / "out")
    verdicts = sorted((r["verdict"].scenario_details for r in rows), key=lambda v: v["t0"])
    overlaps = sum(a["t1"] > b["t0"] for a, b in zip(verdicts, verdicts[1:], strict=False))
    assert overlaps >= 4, "trials did not run in parallel"
    assert len({v["pid"] for v in verdicts}) == 2  # two long-lived workers served all trials
    again = run_experiment(exp, tmp_path / "out", parallel=2, trial_fn=fake_trial)
    assert again.ran == 0 and again.sync.done == 12
    assert all(r["attempt"] == 1 for r in load_rows(tmp_path / "out").rows)


def test_dead_worker_requeues_and_raising_trial_gets_error_verdict(tmp_path: Path) -> None:
    exp = parse_experiment(grid(trials=1, models=["dry-a"]), tmp_path, check_models=False)
    rec = Recorder()
    res = run_experiment(exp, tmp_path / "a", parallel=2, trial_fn=dies_once, listener=rec)
    assert res.complete and res.errors == 0
    assert ("requeued", "dry-a--replicate--000") in rec.events
    assert {r["attempt"] for r in load_rows(tmp_path / "a").rows} == {2}  # no collateral retries
    res = run_experiment(exp, tmp_path / "b", parallel=2, trial_fn=raises)
    assert res.errors == 2
    row = load_rows(tmp_path / "b").rows[0]
    assert row["status"] == "error" and "RuntimeError: boom" in row["verdict"].error
    assert json.loads((tmp_path / "b" / row["trial_id"] / "verdict.json").read_text())["error"]
    assert summarize(tmp_path / "b")["errors"] == 2
    # errors are finished trials: kept on resume unless asked
    assert run_experiment(exp, tmp_path / "b", trial_fn=fake_trial).ran == 0
    res = run_experiment(exp, tmp_path / "b", trial_fn=fake_trial, retry_errors=True)
    assert res.ran == 2 and res.errors == 0
    assert {r["attempt"] for r in load_rows(tmp_path / "b").rows} == {2}


def test_resume_adopts_finished_and_reruns_interrupted(tmp_path: Path) -> None:
    exp = parse_experiment(grid(trials=1, models=["dry-a"]), tmp_path, check_models=False)
    jobs = expand(exp)
    out = tmp_path / "out"
    with Store(out) as store:
        store.sync(jobs)
        for job in jobs:
            store.mark_running(job.trial_id)
        with pytest.raises(StoreBusy):
            Store(out)
    # killed after the first verdict landed but before the index said so; the second trial
    # left a partial folder
    fake_trial(jobs[0].spec, out / jobs[0].trial_id)
    (out / jobs[1].trial_id).mkdir()
    (out / jobs[1].trial_id / "half-written.log").write_text("...")
    first = json.loads((out / jobs[0].trial_id / "verdict.json").read_text())
    res = run_experiment(exp, out, trial_fn=fake_trial)
    assert res.sync.adopted == [jobs[0].trial_id] and res.sync.interrupted == [jobs[1].trial_id]
    assert res.ran == 1
    assert json.loads((out / jobs[0].trial_id / "verdict.json").read_text()) == first
    assert not (out / jobs[1].trial_id / "half-written.log").exists()
    rows = {r["trial_id"]: r for r in load_rows(out).rows}
    assert rows[jobs[0].trial_id]["attempt"] == 1 and rows[jobs[1].trial_id]["attempt"] == 2


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "redline.experiment.cli", *args]


@pytest.mark.slow
def test_sigkill_mid_grid_then_resume(tmp_path: Path) -> None:
    """Kill the runner (only its pid) mid-grid; the re-run finishes it without redoing anything."""
    path = write_toml(tmp_path / "e.toml", seconds=1.0)
    out = tmp_path / "out"
    proc = subprocess.Popen(_cli("run", str(path), "--out", str(out)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while len(list(out.glob("*/verdict.json"))) < 3:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "runner made no progress"
            workers |= {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # workers die with the runner, so nothing writes behind the next run's back
    gone, alive = psutil.wait_procs([psutil.Process(p) for p in workers if psutil.pid_exists(p)],
                                    timeout=10)
    assert not alive, f"workers outlived the runner: {alive}"
    db = sqlite3.connect(out / "index.sqlite")
    before = dict(db.execute("SELECT trial_id, status FROM trials"))
    db.close()
    on_disk = {p.parent.name for p in out.glob("*/verdict.json")}
    finished = {t for t, s in before.items() if s == "done"}
    # killed between a verdict landing and the index update: adopted, not re-run
    adopted = {t for t, s in before.items() if s == "running" and t in on_disk}
    interrupted = {t for t, s in before.items() if s == "running" and t not in on_disk}
    assert finished and len(finished) < 12
    kept = {t: json.loads((out / t / "verdict.json").read_text()) for t in finished | adopted}

    res = subprocess.run(_cli("run", str(path), "--out", str(out)), capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = {r["trial_id"]: r for r in check_grid(out)}
    for t, verdict in kept.items():  # finished trials were not run again
        assert rows[t]["verdict"].document() == verdict and rows[t]["attempt"] == 1
    for t in interrupted:  # interrupted ones ran exactly once more
        assert rows[t]["attempt"] == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trials"] == 12 and summary["pending"] == 0 and len(summary["cells"]) == 4
    assert summary["replicated"] == sum(r["verdict"].replicated for r in rows.values())


def test_summary_command(tmp_path: Path) -> None:
    exp = parse_experiment(grid(trials=2), tmp_path, check_models=False)
    run_experiment(exp, tmp_path / "out", trial_fn=fake_trial)
    res = CliRunner().invoke(app, ["summary", str(tmp_path / "out")])
    assert res.exit_code == 0 and "Wilson" in res.output and "bee" in res.output
    data = json.loads((tmp_path / "out" / "summary.json").read_text())
    cell = next(c for c in data["cells"] if c["model"] == "bee" and c["scenario"] == "shutdown")
    k = cell["replicated"]
    assert cell["rates"]["replicated"]["rate"] == round(k / 2, 4)
    r = wilson(k, 2)
    assert (cell["rates"]["replicated"]["low"], cell["rates"]["replicated"]["high"]) == (
        round(r.lo, 4), round(r.hi, 4))
    assert data["trials"] == 8 and data["errors"] == 0
    res = CliRunner().invoke(app, ["summary", str(tmp_path / "nothing")])
    assert res.exit_code == 2


# ---------------------------------------------------------------- Ray


RAY_GRID = r"""
import json, sys
from pathlib import Path
from redline.experiment.localcluster import private_network
private_network()  # Ray looks up this machine's address; here there is only lo to find
import ray
from redline.experiment.config import load_experiment
from redline.experiment.raybackend import init_ray
from redline.experiment.runner import run_experiment
init_ray()
nodes = [n["NodeManagerAddress"] for n in ray.nodes()]
exp = load_experiment(Path(sys.argv[1]))
res = run_experiment(exp, Path(sys.argv[2]))
again = run_experiment(exp, Path(sys.argv[2]))
print(json.dumps({"nodes": nodes, "ran": res.ran, "complete": res.complete,
                  "errors": res.errors, "slots": res.slots, "again": again.ran}))
"""


@pytest.mark.slow
def test_ray_grid_on_loopback(tmp_path: Path) -> None:
    """The private local Ray instance (no address given), in a network namespace of its own."""
    pytest.importorskip("ray")
    path = write_toml(tmp_path / "e.toml", seconds=0.3, parallel=4, backend='"ray"')
    proc = subprocess.run([sys.executable, "-c", RAY_GRID, str(path), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["nodes"] == ["127.0.0.1"]
    assert (got["ran"], got["complete"], got["errors"], got["slots"]) == (12, True, 0, 4)
    rows = check_grid(tmp_path / "out")
    assert len({r["verdict"].scenario_details["pid"] for r in rows}) > 1
    assert {r["verdict"].node["ip"] for r in rows} == {"127.0.0.1"}
    assert got["again"] == 0


def test_trial_folder_packs_and_comes_home_without_large_files_or_stray_paths(
        tmp_path: Path) -> None:
    from redline.experiment.raybackend import pack, unpack

    src = tmp_path / "node" / "t-001"
    (src / "evidence").mkdir(parents=True)
    (src / "verdict.json").write_text('{"replicated": true}')
    (src / "evidence" / "baseline.json").write_text("{}")
    (src / "weights.gguf").write_bytes(b"x" * 3000)
    (src / "link").symlink_to("verdict.json")
    (src / "escape").symlink_to("/etc/passwd")
    os.link(src / "verdict.json", src / "trace.jsonl")  # as the trace is: a hard link
    data, left = pack(src, max_file=2000)
    assert left == [str(src / "weights.gguf")]
    dest = tmp_path / "driver" / "t-001"
    dest.mkdir(parents=True)
    (dest / "stale-from-an-earlier-attempt").write_text("x")
    unpack(data, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["evidence", "link", "trace.jsonl",
                                                      "verdict.json"]
    assert (dest / "trace.jsonl").read_text() == '{"replicated": true}'
    assert (dest / "evidence" / "baseline.json").read_text() == "{}"
    assert (dest / "link").read_text() == '{"replicated": true}'

    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("t-001/../../outside")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ValueError, match="stray path"):
        unpack(buf.getvalue(), dest)
    assert not (tmp_path / "outside").exists()


def test_loopback_addresses_are_recognised() -> None:
    from redline.experiment.raybackend import is_loopback

    assert is_loopback("127.0.0.1:6379") and is_loopback("localhost:1") and is_loopback(
        "ray://127.0.0.2:10001")
    assert not is_loopback("10.0.0.5:6379") and not is_loopback(None) and not is_loopback(
        "head.cluster.local:6379")


def test_a_local_ray_node_that_missed_registration_starts_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray gives a raylet a fixed 30 s to register; on a loaded machine a node may miss it
    and exit. LocalCluster ends that node and starts it again (a bounded number of times);
    any other exit, or the last miss, is raised with the node's log."""
    from redline.experiment import localcluster

    fake = tmp_path / "ray"
    runs = tmp_path / "runs"
    # Fails the first time as Ray does, then stays up; a node's count is its marker files.
    fake.write_text(f"""#!/bin/sh
n=$(ls {runs} 2>/dev/null | wc -l)
touch {runs}/$n
if [ "$n" = 0 ]; then echo "Exception: The current node timed out during startup."; exit 1; fi
touch {tmp_path}/up-$$
exec sleep 60
""")
    fake.chmod(0o755)
    runs.mkdir()
    monkeypatch.setattr(localcluster, "ray_bin", lambda: str(fake))
    monkeypatch.setattr(localcluster, "POLL_S", 0.05)
    cluster = localcluster.LocalCluster(root=tmp_path / "c")
    monkeypatch.setattr(cluster, "alive_nodes", lambda: [  # registered: said so, still up
        {} for p in cluster.nodes if p.poll() is None and (tmp_path / f"up-{p.pid}").exists()])
    try:
        assert cluster.add_node(timeout_s=10) == 0
        assert len(list(runs.iterdir())) == 2 and len(cluster.nodes) == 1
        assert "timed out during startup" in cluster.log(0)
        fake.write_text("#!/bin/sh\necho 'some other failure'; exit 1\n")
        with pytest.raises(RuntimeError, match="some other failure"):
            cluster.add_node(timeout_s=10)
    finally:
        cluster.stop()
