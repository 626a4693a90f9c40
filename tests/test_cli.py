"""The command's conventions end to end: --json on stdout with progress on stderr, Ctrl-C
during a trial, and the README's sample of `redline run` kept true to what the code prints."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from rich.console import Console
from typer.testing import CliRunner

from redline.cli import app
from redline.contracts.verdict import Verdict
from redline.experiment.progress import verdict_table

ROOT = Path(__file__).resolve().parent.parent
CONTROLS = ROOT / "controls"


@pytest.mark.sandbox
def test_json_results_on_stdout_progress_on_stderr(tmp_path: Path) -> None:
    """run, experiment summary and report: stdout parses as JSON whole."""
    out = tmp_path / "run"
    model = f"scripted:{CONTROLS / 'replicate-negative-claim-only.yaml'}"
    res = CliRunner().invoke(app, ["run", "--json", "--model", model, "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    (verdict,) = data["verdicts"]
    assert data["out"] == str(out) and data["summary"]["trials"] == 1
    assert verdict["false_claim"] is True and verdict["replicated"] is False  # the control
    assert "step 1" in res.stderr  # progress went to stderr
    res = CliRunner().invoke(app, ["experiment", "summary", "--json", str(out)])
    assert res.exit_code == 0 and json.loads(res.stdout)["false_claim"] == 1
    res = CliRunner().invoke(app, ["report", "--json", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert Path(report["report"]).is_file() and report["left_out"] == []


@pytest.mark.sandbox
@pytest.mark.parametrize(("sig", "code"), [("SIGINT", 130), ("SIGTERM", 143), ("SIGHUP", 129)])
def test_a_signal_during_a_trial_is_a_stated_error_and_the_sandbox_is_torn_down(
        tmp_path: Path, sig: str, code: int) -> None:
    """Ctrl-C, and what `timeout`, systemd, `docker stop` and Slurm send (SIGTERM) or a closed
    terminal (SIGHUP): the trial's verdict states it, the summary counts it, the sandbox, its
    store and its cgroups are gone at once, and the exit code is 128 + the signal."""
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "redline.cli", "run", "--model",
         f"scripted:{CONTROLS / 'replicate-positive.yaml'}", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        # a background job may inherit SIGINT ignored; a user's terminal delivers it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not any(p.stat().st_size for p in out.glob("*/trace.jsonl")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        inside = psutil.Process(proc.pid).children(recursive=True)
        assert inside  # the sandbox and the AI system in it
        cgroups = _sandbox_cgroups(inside)
        assert cgroups or os.geteuid() != 0
        proc.send_signal(getattr(signal, sig))
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()  # the process this test started, by its PID
    assert proc.returncode == code, stderr
    assert re.search(rf"error: interrupted \({sig}\): trial replicate-\S+ was stopped and its "
                     r"sandbox torn down; 0 finished trial\(s\) are kept in ", stderr), stderr
    assert "Traceback" not in stderr
    (trial,) = [p for p in out.iterdir() if p.is_dir()]
    verdict = json.loads((trial / "verdict.json").read_text())
    assert verdict["error"].startswith(f"interrupted ({sig}) before it was judged")
    assert verdict["interrupted"] == sig and not verdict["replicated"]
    assert (trial / "trace.jsonl").stat().st_size > 0  # what it did is kept
    assert json.loads((out / "summary.json").read_text())["errors"] == 1
    _, alive = psutil.wait_procs(inside, timeout=10)
    assert not alive, [p.cmdline()[:3] for p in alive]
    assert not [c for c in cgroups if Path(c).exists()]  # removed at once, not by a later run
    assert not list(trial.glob("sandbox/.*.moving")) and (trial / "sandbox" / "home").is_dir()


def _sandbox_cgroups(procs: list[psutil.Process]) -> set[str]:
    """The cgroup folders the sandbox's processes are in (`redline/sb-<id>`)."""
    from redline.sandbox import cgroups as cg

    found = set()
    for proc in procs:
        try:
            lines = Path(f"/proc/{proc.pid}/cgroup").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if "/redline/sb-" not in path:
                continue
            for ctrl in (controllers.split(",") if controllers else [""]):
                base = cg.ROOT / ctrl if ctrl and not cg._v2() else cg.ROOT
                found.add(str(base / path.lstrip("/").split("/sb-")[0] /
                              ("sb-" + path.split("/sb-")[1].split("/")[0])))
    return found


# ------------------------------------------------------------------- the README's sample

README = ROOT / "README.md"
SAMPLE = re.compile(r"<!-- sample of redline run -->\n```\n(.*?)```", re.S)
ROWS = re.compile(r"<!-- rows of the sample -->\n(.*?)\n\n", re.S)


def _printed_rows() -> list[str]:
    """The first column of the verdict table, as `redline run` prints it."""
    verdict = Verdict(trial_id="t", scenario="replicate", model="m", seed=0, setup="paper")
    console = Console(record=True, width=120)
    console.print(verdict_table([verdict]))
    rows = []
    for line in console.export_text().splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line)]
        if len(cells) > 2 and cells[1] and cells[1] != "trial":
            rows.append(cells[1])
    return rows


def test_readme_sample_shows_the_rows_the_code_prints_each_explained() -> None:
    text = README.read_text()
    sample = SAMPLE.search(text)
    assert sample, "README: the sample block of `redline run` is missing"
    shown = [c[1].strip() for c in (re.split(r"│", line) for line in
                                     sample.group(1).splitlines()) if len(c) > 2]
    printed = _printed_rows()
    assert len(printed) >= 10 and "false claim" in printed
    assert shown == printed, "README's sample rows differ from what redline run prints"
    explained = ROWS.search(text)
    assert explained, "README: the list explaining each row is missing"
    items = re.findall(r"^- \*\*([^*]+)\*\*", explained.group(1), re.M)
    assert items == printed, "README: explain each row once, in the order printed"


def test_report_labels_models_by_their_experiment_name(tmp_path: Path) -> None:
    from redline.analysis.runs import load_run

    spec = f"scripted:{CONTROLS / 'replicate-positive.yaml'}"
    (tmp_path / "e.toml").write_text(
        f'name = "names"\nscenarios = ["replicate"]\n[[models]]\nname = "bee"\nmodel = '
        f'"{spec}"\n[resources]\ncpus = 0.5\nmemory_mb = 256\n[dry_run]\nseconds = 0\n')
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["experiment", "run", str(tmp_path / "e.toml"), "--out",
                                   str(out)])
    assert res.exit_code == 0, res.output
    assert [t.model for t in load_run(out).trials] == ["bee"]
    res = CliRunner().invoke(app, ["report", "--json", str(out)])
    assert res.exit_code == 0, res.output
    outcomes = json.loads(res.stdout)["outcomes"]
    assert [r["model"] for r in outcomes] == ["bee"] and "false_claim" in outcomes[0]
    assert spec not in (out / "report.html").read_text().split("<script")[0]


def test_progress_lines_quiet_verbose_no_source_column_and_one_step(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from redline.cliapp import SETTINGS, stderr_console
    from redline.experiment.progress import GridProgress, TrialProgress

    def lines(verbosity: int, events: list[dict[str, object]]) -> str:
        monkeypatch.setattr(SETTINGS, "verbosity", verbosity)
        console = stderr_console()
        console.file = io.StringIO()
        with TrialProgress(console, "trial 1/1") as progress:
            for event in events:
                progress.on_event(event)
        return console.file.getvalue()

    events = [{"type": "llm_call", "step": 1, "latency_s": 0.5},
              {"type": "tool_call", "step": 1, "status_code": "returned",
               "command": "echo [red]x[/red]"}]
    normal = lines(0, events)
    assert "step 1: [returned] echo [red]x[/red]" in normal  # literal, never markup
    assert "progress.py" not in normal and "model call" not in normal
    assert "step 1: model call, 0.5 s" in lines(1, events)
    assert lines(-1, events) == ""
    monkeypatch.setattr(SETTINGS, "verbosity", 0)
    grid = GridProgress(stderr_console())
    grid.console.file = io.StringIO()
    job = type("J", (), {"trial_id": "t-1", "model": "m", "scenario": "s"})()
    grid.cells[("m", "s")] = {"running": 1, "done": 0, "replicated": 0}
    verdict = Verdict(trial_id="t-1", scenario="s", model="m", seed=0, steps=1, duration_s=2)
    grid.finished(job, verdict, "done")
    assert "t-1: not replicated (1 step, 2.0 s)" in grid.console.file.getvalue()


def test_tables_show_false_claim_and_names_with_brackets_whole() -> None:
    from redline.experiment.summary import summary_table

    verdict = Verdict(trial_id="t[red]1", scenario="replicate", model="scripted:x[bold]y.yaml",
                      seed=0, setup="paper", error="bad [weights] line 2")
    console = Console(record=True, width=200)
    console.print(verdict_table([verdict]))
    text = console.export_text()
    assert "t[red]1" in text and "scripted:x[bold]y.yaml" in text
    assert "bad [weights] line 2" in text and "false claim" in text
    rate = {"rate": 0.5, "low": 0.1, "high": 0.9}
    cell = {"model": "m[x]", "scenario": "replicate", "judged": 2, "errors": 0, "pending": 0,
            "mean_steps": 3.0, "mean_duration_s": 1.0,
            **{k: 1 for k in ("replicated", "agreed", "knows_how", "false_claim")},
            "rates": {k: rate for k in ("replicated", "agreed", "knows_how", "false_claim")}}
    console = Console(record=True, width=200)
    console.print(summary_table({"cells": [cell]}, "run[1]"))
    text = console.export_text()
    assert "run[1]" in text and "m[x]" in text and "false claim" in text
