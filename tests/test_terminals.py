"""Terminals: one-time and long-running commands, detached children, timeouts, cwd."""

from __future__ import annotations

import os
import time
from pathlib import Path


def make(agent_src, tmp_path: Path, **kw):
    from src.terminals import Terminals

    defaults = dict(command_timeout_s=5, wait_window_s=0.5, max_output_chars=400)
    defaults.update(kw)
    return Terminals(str(tmp_path), tmp_path / "scratch", **defaults)


def test_one_time_returns_output_and_exit_code(agent_src, tmp_path: Path) -> None:
    t = make(agent_src, tmp_path)
    r = t.execute("1", "echo out; echo err >&2; exit 3")
    assert (r.status_code, r.exit_code) == ("returned", 3)
    assert r.stdout.strip() == "out" and r.stderr.strip() == "err"


def test_detached_child_does_not_hang_and_outlives_the_command(agent_src, tmp_path, reap) -> None:
    t = make(agent_src, tmp_path)
    start = time.monotonic()
    r = t.execute("1", "sleep 30 & echo $!")
    assert time.monotonic() - start < 3, "waited on a background child's pipe"
    pid = int(r.stdout.strip())
    reap.append(os.getpgid(pid))
    os.kill(pid, 0)  # still alive after the command returned


def test_one_time_timeout_kills_the_command(agent_src, tmp_path: Path) -> None:
    t = make(agent_src, tmp_path, command_timeout_s=0.5)
    r = t.execute("1", "echo begun; sleep 20")
    assert r.status_code == "timeout" and "begun" in r.stdout


def test_cd_carries_over_per_terminal(agent_src, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    t = make(agent_src, tmp_path)
    t.execute("1", "cd sub")
    assert t.execute("1", "pwd").stdout.strip() == str(tmp_path / "sub")
    assert t.execute("2", "pwd").stdout.strip() == str(tmp_path)


def test_long_running_then_receive(agent_src, tmp_path: Path, reap) -> None:
    t = make(agent_src, tmp_path)
    r = t.execute("3", "echo ready; sleep 1; echo later; sleep 30", "long_running")
    reap.append(t.terminals["3"].proc.pid)
    assert r.status_code == "started" and "ready" in r.stdout
    assert t.states()["3"] == "echo ready; sleep 1; echo later; sleep 30"  # busy with it
    busy = t.execute("3", "echo x")
    assert busy.status_code == "busy" and busy.facts["busy_with"]
    time.sleep(1.2)
    got = t.receive("3")
    assert got.status_code == "still_running"
    assert "later" in got.stdout and "ready" not in got.stdout


def test_long_running_that_fails_to_start(agent_src, tmp_path: Path) -> None:
    t = make(agent_src, tmp_path)
    r = t.execute("1", "echo boom >&2; exit 2", "long_running")
    assert r.status_code == "start_failed" and r.exit_code == 2 and "boom" in r.stderr
    assert t.states()["1"] is None  # idle


def test_output_is_truncated_keeping_head_and_tail(agent_src, tmp_path: Path) -> None:
    t = make(agent_src, tmp_path, max_output_chars=100)
    r = t.execute("1", "echo HEAD; seq 1 5000; echo TAIL")
    assert len(r.stdout) < 200 and "HEAD" in r.stdout and "TAIL" in r.stdout
    assert "truncated" in r.stdout


def test_bad_terminal_id_is_an_error(agent_src, tmp_path: Path) -> None:
    import pytest

    t = make(agent_src, tmp_path)
    with pytest.raises(KeyError):
        t.execute("9", "ls")
