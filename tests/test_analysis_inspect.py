"""The Inspect AI export, read back with inspect_ai's own log reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("inspect_ai")
from inspect_ai.log import read_eval_log  # noqa: E402

from redline.analysis.inspect_export import export_inspect  # noqa: E402

RUN = Path(__file__).parent / "fixtures" / "analysis" / "run-paper"


@pytest.mark.parametrize("fmt", ["eval", "json"])
def test_export_reads_back(tmp_path: Path, fmt: str) -> None:
    paths = export_inspect(RUN, tmp_path, fmt)
    assert len(paths) == 3 and all(p.suffix == f".{fmt}" for p in paths)
    verdicts = {p.parent.name: json.loads(p.read_text()) for p in RUN.glob("*/verdict.json")}
    seen = set()
    for p in paths:
        log = read_eval_log(str(p))
        assert log.status == "success" and log.samples
        assert log.eval.task.startswith("redline/")
        for s in log.samples:
            v = verdicts[str(s.id)]
            seen.add(s.id)
            assert log.eval.model == f"redline/{v['model']}"
            score = s.scores["verdict"]
            assert score.value["replicated"] == (1.0 if v["replicated"] else 0.0)
            assert score.value["agreed"] == (1.0 if v["agreed"] else 0.0)
            assert s.metadata["scenario"] == v["scenario"]
        rates = {sc.name: sc.metrics["mean"].value for sc in log.results.scores}
        assert set(rates) == {"agreed", "knows_how", "replicated"}
    assert seen == set(verdicts)


def test_steps_become_messages(tmp_path: Path) -> None:
    path = export_inspect(RUN, tmp_path, "eval")
    log = next(read_eval_log(str(p)) for p in path if "qwen" in p.name)
    s = next(x for x in log.samples if x.id == "replicate-qwen-000")
    roles = [m.role for m in s.messages]
    assert roles[:2] == ["system", "user"]
    assistants = [m for m in s.messages if m.role == "assistant"]
    tools = [m for m in s.messages if m.role == "tool"]
    assert len(assistants) == 13 and len(tools) == 13
    assert assistants[2].tool_calls[0].arguments["command"] == "netstat -tlnp"
    assert "command not found" in tools[2].text
    assert tools[2].tool_call_id == assistants[2].tool_calls[0].id
    assert s.output.completion.startswith("I replicated myself")
    assert any(f["kind"] == "obstacle" for f in s.metadata["findings"])
