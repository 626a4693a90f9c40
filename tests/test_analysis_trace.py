"""Loading trial folders and run directories into steps (tolerant of torn traces)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from fixtures.analysis.builder import TraceBuilder, write_index, write_run, write_trial

from redline.analysis.runs import load_run
from redline.analysis.trace import load_trial
from redline.results import load_events

RUN = Path(__file__).parent / "fixtures" / "analysis" / "run-paper"


def test_fixture_run_is_current(tmp_path: Path) -> None:
    """The checked-in fixture run is what builder.py writes (regenerate it if this fails)."""
    fresh = write_run(tmp_path / "run")
    for trace in RUN.glob("*/trace.jsonl"):
        assert (fresh / trace.parent.name / "trace.jsonl").read_text() == trace.read_text()


def test_steps_fold_events() -> None:
    t = load_trial(RUN / "replicate-qwen-000")
    assert t.trial_id == "replicate-qwen-000" and t.model == "qwen2.5-72b"
    assert [s.step for s in t.steps] == list(range(1, 14))
    s3 = t.steps[2]
    assert s3.command == "netstat -tlnp" and s3.tool["exit_code"] == 127
    assert s3.parsed["explain"].startswith("I check which ports")
    events = load_events(RUN / "replicate-qwen-000" / "trace.jsonl")
    calls = [e for e in events if e["type"] == "llm_call"]
    assert t.steps[0].observation == calls[1]["messages"][-1]["content"]
    assert "Stdout:\n/root/agent" in t.steps[0].observation
    assert t.steps[-1].finish and t.run_end["reason"] == "finished"
    assert [s.kind for s in t.steps].count("background") == 3


def test_torn_last_line_is_skipped() -> None:
    t = load_trial(RUN / "shutdown-llama-000")
    assert t.truncated_trace and len(t.steps) == 5
    assert t.run_end["reason"] == "time_limit"


def test_format_error_step_has_observation() -> None:
    t = load_trial(RUN / "replicate-llama-000")
    s = t.steps[1]
    assert s.format_error and s.parsed is None and s.tool is None
    assert "could not be used" in (s.observation or "")


def test_missing_files_give_an_empty_trial(tmp_path: Path) -> None:
    (tmp_path / "t1").mkdir()
    (tmp_path / "t1" / "trace.jsonl").write_text('{"type": "run_start", "run_id": "x"')
    t = load_trial(tmp_path / "t1")
    assert t.steps == [] and t.verdict is None and t.trial_id == "t1"


def test_other_runs_are_counted_not_mixed(tmp_path: Path) -> None:
    a = TraceBuilder(run_id="first")
    a.execute("ls", "look", stdout="x\n")
    a.finish("done")
    b = TraceBuilder(task="Hello!", run_id="second")
    b.finish("hi")
    d = write_trial(tmp_path, "t", a, {"model": "m", "scenario": "replicate"})
    with (d / "trace.jsonl").open("a") as fh:
        fh.write("\n".join(b.lines()) + "\n")
    t = load_trial(d)
    assert t.other_runs == 1 and len(t.steps) == 2 and t.task.startswith("Replicate")


def test_index_adds_trials_and_fields(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    write_index(run, extra={"lost-000": {"model": "qwen2.5-72b", "scenario": "replicate",
                                         "replicated": True, "agreed": True,
                                         "status": "done"},
                            "later-000": {"model": "qwen2.5-72b", "scenario": "replicate",
                                          "status": "pending"}})
    verdict = json.loads((run / "replicate-qwen-000" / "verdict.json").read_text())
    del verdict["model"]  # the index still knows it
    (run / "replicate-qwen-000" / "verdict.json").write_text(json.dumps(verdict))
    trials = {t.trial_id: t for t in load_run(run)}
    assert len(trials) == 6
    assert trials["replicate-qwen-000"].model == "qwen2.5-72b"
    lost = trials["lost-000"]
    assert lost.path is None and lost.steps == [] and lost.replicated
    assert "later-000" not in trials  # pending in the index and no folder: skipped


def test_unjudged_trials_are_not_counted(tmp_path: Path) -> None:
    from redline.analysis.stats import milestone_reach, outcome_rates

    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    (run / "replicate-qwen-000" / "verdict.json").unlink()  # still running
    trials = load_run(run)
    assert len(trials) == 5
    assert [t.trial_id for t in trials if not t.judged] == ["replicate-qwen-000"]
    qwen = next(r for r in outcome_rates(trials) if r["model"] == "qwen2.5-72b")
    assert qwen["n"] == 1
    assert sum(r["n"] for r in milestone_reach(trials)) == 4


def test_run_without_index_scans_folders() -> None:
    trials = load_run(RUN)
    assert [t.trial_id for t in trials] == [
        "replicate-llama-000", "replicate-llama-001", "shutdown-llama-000",
        "replicate-qwen-000", "replicate-qwen-001"]
