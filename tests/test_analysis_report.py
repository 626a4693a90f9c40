"""The report's figures are checked against the traces, and the HTML is self-contained."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
import typer
from fixtures.analysis.builder import big_trial, tok, write_trial
from typer.testing import CliRunner

from redline.analysis import stats
from redline.analysis.cli import app as export_app
from redline.analysis.cli import report_command
from redline.analysis.commands import CATEGORIES, classify
from redline.analysis.report import build_report
from redline.analysis.runs import load_run

RUN = Path(__file__).parent / "fixtures" / "analysis" / "run-paper"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(RUN, run)
    build_report(run)
    return run


def raw_events(trial_dir: Path) -> list[dict]:
    """Events read straight from the JSONL, independently of redline.analysis.trace."""
    out = []
    for line in (trial_dir / "trace.jsonl").read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def test_files_and_self_contained(report: Path) -> None:
    for name in ("report.html", "analysis.json", "outcomes.png", "action_types.png",
                 "command_categories.png", "observation_tokens.png", "milestones.png"):
        assert (report / name).stat().st_size > 1000, name
    html = (report / "report.html").read_text()
    # no external resource: every src/href is inline data, a local file or an in-page anchor
    for ref in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert ref.startswith(("data:image/png;base64,", "#")) or re.fullmatch(r"\w+\.png", ref)
    page = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)
    page = re.sub(r'<script type="application/json".*?</script>', "", page, flags=re.S)
    assert "<link" not in page and "@import" not in page
    assert "http://" not in page and "https://" not in page and "//cdn" not in page
    assert html.count("data:image/png;base64,") == 5


def test_outcome_data_matches_verdicts(report: Path) -> None:
    data = json.loads((report / "analysis.json").read_text())
    verdicts = [json.loads(p.read_text()) for p in RUN.glob("*/verdict.json")]
    for row in data["outcomes"]:
        mine = [v for v in verdicts if (v["model"], v["scenario"]) == (row["model"],
                                                                        row["scenario"])]
        assert row["n"] == len(mine)
        for o in stats.PAPER_OUTCOMES:
            k = sum(bool(v[o]) for v in mine)
            assert (row[o]["k"], row[o]["n"]) == (k, len(mine))
            assert row[o]["lo"] <= row[o]["p"] <= row[o]["hi"]
    assert sum(r["n"] for r in data["outcomes"]) == len(verdicts) == 5


def test_wilson_interval() -> None:
    r = stats.wilson(9, 10)
    assert (round(r.lo, 3), round(r.hi, 3)) == (0.596, 0.982)
    assert stats.wilson(0, 10).lo == 0.0 and stats.wilson(10, 10).hi == 1.0
    assert stats.wilson(0, 0).n == 0


def test_action_types_match_tool_calls(report: Path) -> None:
    data = json.loads((report / "analysis.json").read_text())
    for row in data["action_types"]:
        calls = [e for e in raw_events(RUN / row["trial_id"]) if e["type"] == "tool_call"]
        assert row["receive"] == sum(e["tool"].startswith("receive") for e in calls)
        assert row["background"] == sum(e["command_type"] == "long_running" for e in calls)
        assert row["immediate"] == sum(e["command_type"] == "one_time" for e in calls)
    qwen = next(r for r in data["action_types"] if r["trial_id"] == "replicate-qwen-000")
    assert (qwen["background"], qwen["receive"], qwen["immediate"]) == (3, 1, 8)


def test_command_categories_match_commands(report: Path) -> None:
    data = json.loads((report / "analysis.json").read_text())
    rows = {(r["model"], r["subset"]): r for r in data["command_categories"]}
    # the paper's trace in miniature, hand-labelled: 9 exploring, 2 changing, 1 utility, 3 runs
    qwen_ok = rows[("qwen2.5-72b", "replicated")]["counts"]
    assert [qwen_ok[c] for c in CATEGORIES] == [9, 2, 1, 3]
    for (model, subset), row in rows.items():
        expect = dict.fromkeys((*CATEGORIES, "other"), 0)
        for vfile in RUN.glob("*/verdict.json"):
            v = json.loads(vfile.read_text())
            if v["model"] != model or (subset == "replicated" and not v["replicated"]):
                continue
            for e in raw_events(vfile.parent):
                if e["type"] == "tool_call" and e["command"]:
                    for p in classify(e["command"]):
                        expect[p.category] += 1
        assert row["counts"] == expect
        total = sum(expect[c] for c in CATEGORIES)
        assert row["total"] == total
        assert math.isclose(sum(row["shares"].values()), 1.0 if total else 0.0)


def test_observation_tokens_match_trace(report: Path) -> None:
    data = json.loads((report / "analysis.json").read_text())
    rows = {r["trial_id"]: r for r in data["observation_tokens"]}
    # with usage: each step's tokens are what its observation added to the next prompt
    calls = [e for e in raw_events(RUN / "replicate-qwen-000") if e["type"] == "llm_call"]
    expect = [tok(c["messages"][-1]["content"]) for c in calls[1:]] + [0]
    assert rows["replicate-qwen-000"]["tokens"] == expect
    assert rows["replicate-qwen-000"]["methods"] == ["none", "prompt_delta"]
    assert rows["replicate-qwen-000"]["cumulative"][-1] == sum(expect)
    # without usage (server did not say): estimated from the observation text, len/4
    events = raw_events(RUN / "shutdown-llama-000")
    calls = [e for e in events if e["type"] == "llm_call"]
    expect = [math.ceil(len(c["messages"][-1]["content"]) / 4) for c in calls[1:]]
    last = [e for e in events if e["type"] == "tool_call"][-1]
    expect.append(math.ceil(len(f"{last['status']}\n{last['stdout']}\n{last['stderr']}") / 4))
    assert rows["shutdown-llama-000"]["tokens"] == expect
    assert rows["shutdown-llama-000"]["methods"] == ["estimate"]


def test_milestones_match_verdicts(report: Path) -> None:
    data = json.loads((report / "analysis.json").read_text())
    verdicts = [json.loads(p.read_text()) for p in RUN.glob("*/verdict.json")]
    for row in data["milestones"]:
        mine = [v for v in verdicts if v["model"] == row["model"]]
        for m in stats.MILESTONES:
            assert row["reach"][m]["k"] == sum(v["milestones"][m] for v in mine)
        assert row["reach"]["replicated"]["k"] == sum(v["replicated"] for v in mine)


def test_viewer_data_embedded(report: Path) -> None:
    html = (report / "report.html").read_text()
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html,
                  re.S)
    assert m
    data = json.loads(m.group(1))
    trial = next(t for t in data["trials"] if t["id"] == "replicate-qwen-001")
    assert len(trial["steps"]) == 9
    assert {f["kind"] for f in trial["findings"]} >= {"kill_own_llm_server", "edit_own_code"}
    assert trial["steps"][3]["status_code"] == "start_failed"
    assert trial["verdict"]["replicated"] is False


def test_script_breakout_is_escaped(tmp_path: Path) -> None:
    from fixtures.analysis.builder import TraceBuilder

    tb = TraceBuilder()
    tb.execute("echo '</script><script>alert(1)</script>'", "x",
               stdout="</script><script>alert(1)</script>\n")
    tb.finish("done")
    write_trial(tmp_path / "run", "t", tb, {"model": "m", "scenario": "replicate"})
    html = build_report(tmp_path / "run").read_text()
    assert "<script>alert(1)" not in html


def test_big_trial_report(tmp_path: Path) -> None:
    tb, verdict = big_trial()
    write_trial(tmp_path / "run", "big-000", tb, verdict)
    path = build_report(tmp_path / "run")  # its speed: bench/bench_report.py
    trials = load_run(tmp_path / "run").trials
    assert len(trials[0].steps) == 200
    assert path.stat().st_size < 20_000_000


def test_cli_commands(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    top = typer.Typer()
    top.add_typer(export_app, name="export")
    top.command("report")(report_command)
    runner = CliRunner()
    res = runner.invoke(top, ["report", str(run)])
    assert res.exit_code == 0, res.output
    assert (run / "report.html").exists()
    res = runner.invoke(top, ["export", "inspect", str(run), "--format", "json"])
    assert res.exit_code == 0, res.output
    assert len(list((run / "inspect").glob("*.json"))) == 3
    res = runner.invoke(top, ["report", str(tmp_path / "nope")])
    assert res.exit_code != 0
