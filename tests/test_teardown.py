"""Teardown leaves nothing: after a trial of each scenario (its scripted positive control, the
one that leaves the most running), no process, namespace, cgroup, veth or mount survives.

Every sandbox a trial starts (the remote scenario starts two) is recorded by wrapping
Sandbox.start; its namespaces are identified by inode, so a reused PID cannot fool the test.
"""

from __future__ import annotations

import glob
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import CONTROLS, PACE

from redline.sandbox import base as sandbox_mod
from redline.scenarios.remote import host_links, netns_in_use
from redline.trial import TrialSpec, run_trial

SCENARIOS = ["replicate", "shutdown", "chain", "remote", "exfiltrate", "persist", "adapt",
             "overload"]


def _ino(pid: int, kind: str) -> int:
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino


def _tasks_in(kind: str, inode: int) -> list[int]:
    """Host tasks (threads included) inside a namespace."""
    if kind == "net":
        return netns_in_use(inode)
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}/ns/{kind}").st_ino == inode:
                found.append(int(pid))
        except OSError:
            continue
    return found


def _mounts_naming(path: str) -> list[str]:
    hits = []
    for info in glob.glob("/proc/[0-9]*/mountinfo"):
        try:
            with open(info) as fh:
                hits += [f"{info}: {line.strip()}" for line in fh if path in line]
        except OSError:
            continue
    return hits


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Records every sandbox started during the test: id, state dir, namespace inodes. It
    holds each namespace open until the test ends: the kernel reuses a dead namespace's inode
    for the next one made, and with other trials running beside this one, their processes
    would be taken for this sandbox's leftovers (seen in the parallel tier)."""
    seen: list[dict[str, Any]] = []
    held: list[int] = []
    real_start = sandbox_mod.SandboxBase.start

    def start(self: sandbox_mod.SandboxBase) -> None:
        real_start(self)
        kinds = ("pid", "net", "mnt", "ipc", "uts")
        held.extend(os.open(f"/proc/{self.pid1}/ns/{k}", os.O_RDONLY | os.O_CLOEXEC)
                    for k in kinds)
        seen.append({"id": self.id, "state_dir": str(self.state_dir), "store": self.store,
                     "host_pids": sorted(self.root_pids),
                     "ns": {k: os.fstat(fd).st_ino for k, fd in zip(kinds, held[-5:],
                                                                     strict=True)}})

    monkeypatch.setattr(sandbox_mod.SandboxBase, "start", start)
    yield seen
    for fd in held:
        os.close(fd)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_trial_leaves_nothing_behind(scenario: str, tmp_path: Path,
                                       started: list[dict[str, Any]]) -> None:
    spec = TrialSpec(model=f"scripted:{CONTROLS / f'{scenario}-positive.yaml'}",
                     scenario=scenario, max_steps=20, time_limit_s=240, seed=11,
                     scenario_options=PACE.get(scenario, {}),
                     judge={"survival_s": 2})  # leaks are the point here, not the verdict
    verdict = run_trial(spec, tmp_path / "t").document()
    assert verdict["error"] is None, verdict["error"]
    assert len(started) == (2 if scenario == "remote" else 1)

    evidence = tmp_path / "t" / "evidence"
    base, after = ({p["host_pid"] for p in json.loads((evidence / name).read_text())}
                   for name in ("baseline_processes.json", "processes_after.json"))
    assert after - base, "the agent started nothing: the test would prove nothing"
    seen_pids = base | after

    deadline = time.monotonic() + 5  # helper threads leave their namespaces asynchronously
    while True:
        left: dict[str, Any] = {}
        for sb in started:
            for kind, inode in sb["ns"].items():
                if tasks := _tasks_in(kind, inode):
                    left[f"{sb['id']} {kind} namespace"] = tasks
            if cgroups := glob.glob(f"/sys/fs/cgroup/*/redline/sb-{sb['id']}") + \
                    glob.glob(f"/sys/fs/cgroup/redline/sb-{sb['id']}"):
                left[f"{sb['id']} cgroups"] = cgroups
            if mounts := _mounts_naming(sb["state_dir"]):
                left[f"{sb['id']} mounts"] = mounts
            if sb["store"] is not None:  # home and /tmp were in the neutral folder
                if mounts := _mounts_naming(str(sb["store"])):
                    left[f"{sb['id']} mounts of its store"] = mounts
                if sb["store"].exists():
                    left[f"{sb['id']} store"] = str(sb["store"])
        # PIDs seen during the trial: gone, or reused by something outside every sandbox
        alive = [p for p in seen_pids | {p for sb in started for p in sb["host_pids"]}
                 if os.path.exists(f"/proc/{p}") and any(
                     _safe_ino(p) == sb["ns"]["pid"] for sb in started)]
        if alive:
            left["trial processes"] = alive
        if links := host_links():
            left["veth in the host namespace"] = links
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert left == {}, left
    teardown = verdict.get("teardown") or {}
    assert teardown.get("leftover") == 0, teardown
    if scenario == "remote":
        report = json.loads((evidence / "remote" / "teardown.json").read_text())
        assert report["left"] == {"host_links": [], "netns_users": {}}
        assert report["target"]["leftover"] == 0


def _safe_ino(pid: int) -> int | None:
    try:
        return _ino(pid, "pid")
    except OSError:
        return None
