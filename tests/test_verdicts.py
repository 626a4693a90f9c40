"""Verdicts read back: typed, versioned, migrated, validated; counted one way everywhere.

No sandbox here: trials are stand-ins that write real verdicts (the store, the runner, the
summary, the report and the Inspect export are the real ones).
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from redline.analysis.report import build_report
from redline.analysis.runs import load_run
from redline.contracts.rates import outcome_rates
from redline.contracts.verdict import (
    SCHEMA_VERSION,
    UNOBSERVED,
    InvalidFile,
    Verdict,
    migrate,
    parse_verdict,
    read_verdict,
)
from redline.experiment.cli import app as experiment_app
from redline.experiment.config import parse_experiment
from redline.experiment.progress import verdict_table
from redline.experiment.runner import run_experiment
from redline.experiment.summary import summarize, write_summary
from redline.results import atomic_write_json
from redline.trial import TrialSpec

HERE = Path(__file__).parent
FIXTURE_RUN = HERE / "fixtures" / "analysis" / "run-paper"


def judged(trial_id: str, replicated: bool, **over: object) -> Verdict:
    fields: dict[str, object] = {
        "agreed": True, "knows_how": replicated, "claimed_success": replicated,
        "false_claim": False, "steps": 5, "duration_s": 1.0, **over}
    return Verdict.model_validate({"trial_id": trial_id, "model": "m", "scenario": "replicate",
                                   "replicated": replicated, **fields})


def write(folder: Path, data: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "verdict.json").write_text(json.dumps(data))
    return folder / "verdict.json"


# ---------------------------------------------------------------- the typed, versioned file


def test_a_verdict_round_trips_and_carries_its_version(tmp_path: Path) -> None:
    v = judged("t1", True)
    path = write(tmp_path / "t1", v.document())
    back = read_verdict(path)
    assert back == v and back.schema_version == SCHEMA_VERSION and back.protocol == "text"
    assert v.document()["candidates"] == [] and "replicas" not in v.document()


def test_what_version_1_wrote_is_migrated_not_dropped() -> None:
    """The fixture run was written before versions (replicas, no schema_version)."""
    for path in sorted(FIXTURE_RUN.glob("*/verdict.json")):
        old = json.loads(path.read_text())
        v = read_verdict(path)
        assert "schema_version" not in old and v.schema_version == SCHEMA_VERSION
        assert [c.agent.port for c in v.candidates] == [r["agent"]["port"]
                                                       for r in old["replicas"]]
        assert v.replicated is old["replicated"] and v.agreed is old["agreed"]
        dumped = v.document()["candidates"]  # what an earlier judge recorded is kept
        for new, was in zip(dumped, old["replicas"], strict=True):
            assert {k: new["agent"][k] for k in was["agent"]} == was["agent"]
    dry = {"trial_id": "d", "model": "dry-a", "scenario": "replicate", "pid": 4242,
           "replicated": True, "scenario_details": {"dry_run": True}}
    assert parse_verdict(dry, "d").scenario_details == {"dry_run": True, "pid": 4242}
    failed = {"trial_id": "f", "model": "m", "scenario": "replicate", "error": "no server",
              "agreed": True, "knows_how": False, "claimed_success": False, "steps": 0}
    v = parse_verdict(failed, "f")  # an empty trace's "facts": never observed, so null
    assert (v.agreed, v.knows_how, v.claimed_success, v.false_claim) == (None,) * 4
    assert migrate(failed) is not failed and failed["agreed"] is True  # input untouched


@pytest.mark.parametrize(("data", "field"), [
    ({"replicated": "false"}, "replicated"),
    ({"replicated": 1}, "replicated"),
    ({"agreed": "yes"}, "agreed"),
    ({"steps": "12"}, "steps"),
    ({"colour": "red"}, "colour"),
    ({"candidates": [{"agent": {"port": 8001}, "replica": "true"}]}, "candidates.0.replica"),
    ({"schema_version": 99}, "schema_version"),
])
def test_a_bad_field_is_an_error_naming_path_and_field(tmp_path: Path, data: dict,
                                                       field: str) -> None:
    path = write(tmp_path / "t", {**judged("t", False).document(), **data})
    with pytest.raises(InvalidFile) as err:
        read_verdict(path)
    assert err.value.path == str(path) and str(path) in str(err.value)
    assert any(p.startswith(f"{field}:") for p in err.value.problems), err.value.problems


@pytest.mark.parametrize("text", ['{"trial_id": "t", "repl', "[1, 2]", ""])
def test_a_truncated_or_foreign_file_is_invalid_never_a_default(tmp_path: Path,
                                                                text: str) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "verdict.json").write_text(text)
    with pytest.raises(InvalidFile, match="verdict.json"):
        read_verdict(tmp_path / "t" / "verdict.json")


# ---------------------------------------------------------------- readers that validate


def test_string_false_is_rejected_not_counted(tmp_path: Path) -> None:
    write(tmp_path / "good", judged("good", False).document())
    write(tmp_path / "bad", {**judged("bad", False).document(), "replicated": "false"})
    s = summarize(tmp_path)
    assert (s["trials"], s["judged"], s["replicated"]) == (1, 1, 0)
    (bad,) = s["left_out"]
    assert bad["path"] == str(tmp_path / "bad" / "verdict.json")
    assert bad["problems"][0].startswith("replicated:")
    run = load_run(tmp_path)
    assert [t.trial_id for t in run] == ["good"] and len(run.invalid) == 1


def test_a_corrupted_verdict_keeps_a_good_summary(tmp_path: Path) -> None:
    write(tmp_path / "a", judged("a", True).document())
    good = write_summary(tmp_path)
    assert (good["replicated"], good["judged"]) == (1, 1)
    kept = (tmp_path / "summary.json").read_text()
    (tmp_path / "a" / "verdict.json").write_text('{"trial_id": "a", "replicated": tr')
    # nothing validates: summary.json stays as it was, and the command says why (an error)
    res = CliRunner().invoke(experiment_app, ["summary", str(tmp_path)])
    assert res.exit_code != 0, res.output
    assert "a/verdict.json" in res.output and "left as it was" in res.output
    assert (tmp_path / "summary.json").read_text() == kept
    assert not list(tmp_path.glob(".summary.json.*"))  # no half-written file left behind
    # one good trial again: rewritten from what validates, saying how many were left out
    write(tmp_path / "b", judged("b", False).document())
    s = write_summary(tmp_path)
    assert (s["trials"], s["judged"], s["replicated"], len(s["left_out"])) == (1, 1, 0, 1)
    assert json.loads((tmp_path / "summary.json").read_text())["left_out"] == s["left_out"]


# ---------------------------------------------------------------- what was not observed


def test_a_task_that_never_ran_observes_nothing() -> None:
    facts = {"agreed": True, "knows_how": False, "claimed_success": False, "steps": 0,
             "milestones": {}, "finish_message": None, "end_reason": None}
    v = Verdict(trial_id="t", model="m", scenario="replicate")
    v.failed("the LLM server did not start")
    v.finish(facts, task_ran=False)
    assert (v.agreed, v.knows_how, v.claimed_success, v.false_claim) == (None,) * 4
    assert v.document()["agreed"] is None
    ran = Verdict(trial_id="t", model="m", scenario="replicate").finish(facts)
    assert (ran.agreed, ran.knows_how, ran.claimed_success, ran.false_claim) == (
        True, False, False, False)
    table = verdict_table([v])
    assert UNOBSERVED in {str(c) for col in table.columns for c in col._cells}


def test_a_trial_stopped_before_its_task_has_null_facts(tmp_path: Path) -> None:
    """run_trial itself: weights that cannot be served fail before any sandbox starts."""
    from redline.trial import run_trial

    bad = tmp_path / "bad.yaml"
    bad.write_text("{not: valid: yaml")
    v = run_trial(TrialSpec(model=f"scripted:{bad}", time_limit_s=60), tmp_path / "t")
    on_disk = read_verdict(tmp_path / "t" / "verdict.json")
    assert v.error and on_disk == v
    assert (v.agreed, v.knows_how, v.claimed_success, v.false_claim) == (None,) * 4


def test_inspect_leaves_unobserved_outcomes_unscored() -> None:
    pytest.importorskip("inspect_ai")
    from redline.analysis.inspect_export import score_value

    v = judged("t", False, agreed=None, knows_how=None, claimed_success=None,
               false_claim=None)
    assert score_value(v) == {"replicated": 0.0}


# ---------------------------------------------------------------- one way of counting


def one_error_two_judged(spec: TrialSpec, out_dir: Path) -> Verdict:
    """Two judged trials (one replicates) and one the harness could not run."""
    if spec.seed == 2:
        raise RuntimeError("the harness broke")
    v = Verdict(trial_id=spec.trial_id or out_dir.name, model=spec.model,
                scenario=spec.scenario, seed=spec.seed, replicated=spec.seed == 0,
                agreed=True, knows_how=True, claimed_success=True, steps=3, duration_s=0.1)
    v.finish()
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "verdict.json", v.document())
    return v


def test_one_error_and_two_judged_count_the_same_everywhere(tmp_path: Path) -> None:
    """summary.json, the report (analysis.json and its table) and the Inspect export:
    n = 2 judged trials, errors = 1, replicated 1 of 2."""
    exp = parse_experiment({"name": "count", "models": ["dry-a"], "scenarios": ["replicate"],
                            "trials": 3, "seed": 0, "parallel": 1,
                            "resources": {"cpus": 0.5, "memory_mb": 256}}, tmp_path,
                           check_models=False)
    out = tmp_path / "out"
    result = run_experiment(exp, out, trial_fn=one_error_two_judged)
    assert result.errors == 1
    (cell,) = write_summary(out)["cells"]
    assert (cell["judged"], cell["errors"], cell["replicated"]) == (2, 1, 1)
    assert cell["rates"]["replicated"]["rate"] == 0.5

    build_report(out)
    (row,) = json.loads((out / "analysis.json").read_text())["outcomes"]
    assert (row["n"], row["errors"], row["replicated"]["k"], row["replicated"]["n"]) == (
        2, 1, 1, 2)
    html = (out / "report.html").read_text()
    # model, scenario, (protocol,) n, errors
    assert re.search(r"<td>dry-a</td><td>replicate</td>(<td>\w+</td>)?<td>2</td><td>1</td>",
                     html)

    pytest.importorskip("inspect_ai")
    from inspect_ai.log import read_eval_log

    from redline.analysis.inspect_export import export_inspect

    (path,) = export_inspect(out, tmp_path / "inspect", fmt="json")
    log = read_eval_log(str(path))
    assert log.results is not None and log.eval.metadata is not None
    assert (log.results.total_samples, log.results.completed_samples) == (3, 2)
    assert (log.eval.metadata["judged"], log.eval.metadata["errors"]) == (2, 1)
    replicated = next(s for s in log.results.scores if s.name == "replicated")
    assert replicated.scored_samples == 2 and replicated.metrics["mean"].value == 0.5
    scored = [s for s in log.samples or [] if s.scores]
    assert len(scored) == 2  # the harness error is not scored at all
    counted = outcome_rates(t.verdict for t in load_run(out) if t.verdict)
    assert (counted.n, counted.errors, counted.k("replicated")) == (2, 1, 1)


def test_an_old_results_folder_reads_as_before(tmp_path: Path) -> None:
    """A copy of a run written before versions: every trial read, none left out."""
    run = tmp_path / "run"
    shutil.copytree(FIXTURE_RUN, run)
    s = summarize(run)
    assert s["trials"] == 5 and s["left_out"] == []
    assert len(load_run(run)) == 5 and load_run(run).invalid == []


def test_the_report_reads_summary_json_through_its_model(tmp_path: Path) -> None:
    """A summary.json that does not validate is named in the report, never shown as counts."""
    from redline.experiment.summary import read_summary

    run = tmp_path / "run"
    shutil.copytree(FIXTURE_RUN, run)
    assert read_summary(run / "summary.json")["trials"] == 5  # the earliest form reads
    (run / "summary.json").write_text(json.dumps({"trials": "5", "cells": []}))
    with pytest.raises(InvalidFile, match="trials: Input should be a valid integer"):
        read_summary(run / "summary.json")
    build_report(run)
    (bad,) = json.loads((run / "analysis.json").read_text())["left_out"]
    assert bad["path"] == str(run / "summary.json")
    assert "1 file(s) left out of every count" in (run / "report.html").read_text()


def test_a_resumed_experiment_stops_at_a_verdict_that_does_not_validate(tmp_path: Path) -> None:
    """A trial folder whose verdict.json does not validate is never taken for a missing one:
    the run stops with one line naming it, and the file is not deleted or run over."""
    exp = tmp_path / "e.toml"
    exp.write_text('name = "x"\nmodels = ["dry-a"]\nscenarios = ["replicate"]\ntrials = 2\n'
                   "[dry_run]\nseconds = 0.01\n")
    out = tmp_path / "out"
    res = CliRunner().invoke(experiment_app, ["run", str(exp), "--out", str(out)])
    assert res.exit_code == 0, res.output
    (first, _) = sorted(p.parent for p in out.glob("*/verdict.json"))
    db = sqlite3.connect(out / "index.sqlite")  # as if the runner died before the index said so
    db.execute("UPDATE trials SET status='running', verdict_json=NULL")
    db.commit()
    db.close()
    (first / "verdict.json").write_text('{"trial_id": "x", "replicated": "false"}')
    res = CliRunner().invoke(experiment_app, ["run", str(exp), "--out", str(out)])
    assert res.exit_code == 2 and "replicated" in res.output and first.name in res.output
    assert (first / "verdict.json").read_text() == '{"trial_id": "x", "replicated": "false"}'
