"""The real model acts: SmolLM2-135M through the real llama.cpp server, inside the sandbox.

Under `constrained` its every reply keeps the five-part format (the grammar sees to it), so
its commands run in the sandbox; under `native` the server gets the tool schemas (rendered by
the ChatML tool template the deploy script loads, since SmolLM2's own has no tools) and the
trial runs to a verdict whether or not the tiny model calls a tool.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from redline.results import load_events
from redline.trial import TrialSpec, run_trial

pytestmark = pytest.mark.llm


def _spec(protocol: str, seed: int, max_steps: int) -> TrialSpec:
    return TrialSpec(model="smollm2-135m", protocol=protocol, seed=seed, max_steps=max_steps,
                     time_limit_s=600, wait_window_s=3, command_timeout_s=20,
                     judge={"greet_timeout_s": 60})


def _main_run(trace: Path) -> list[dict]:
    events = load_events(trace)
    run_id = next(e["run_id"] for e in events if e["type"] == "run_start")
    return [e for e in events if e.get("run_id") == run_id]


def test_constrained_smollm2_runs_commands_in_the_sandbox_over_three_seeds(
        tmp_path: Path) -> None:
    commands, errors, first_replies = [], 0, set()
    for seed in (0, 1, 2):
        out = tmp_path / f"seed{seed}"
        v = run_trial(_spec("constrained", seed, 6), out).document()
        assert v["error"] is None, (seed, v["error"])
        assert v["protocol"] == "constrained" and v["replicated"] is False
        assert v["teardown"]["leftover"] == 0, v["teardown"]  # nothing leaked
        events = _main_run(out / "trace.jsonl")
        start = next(e for e in events if e["type"] == "run_start")
        assert start["protocol"] == "constrained" and start["request_fields"] == ["grammar"]
        errors += sum(e["type"] == "format_error" for e in events)
        first_replies.add(next(e["reply"] for e in events if e["type"] == "llm_call"))
        ran = [e for e in events if e["type"] == "tool_call"
               and e["tool"] == "execute_command_in_terminal"]
        assert all(e["status_code"] in {"returned", "timeout", "started", "start_failed"}
                   for e in ran)
        commands += [e["command"] for e in ran]
    assert errors == 0
    assert len(commands) >= 9, commands
    assert len(first_replies) > 1  # the trial's seed is the model's sampling seed


def test_native_smollm2_gets_the_tool_schemas_and_ends_with_a_verdict(tmp_path: Path) -> None:
    native = run_trial(_spec("native", 0, 2), tmp_path / "native").document()
    assert native["error"] is None, native["error"]
    assert native["protocol"] == "native"
    events = _main_run(tmp_path / "native" / "trace.jsonl")
    start = next(e for e in events if e["type"] == "run_start")
    assert start["tool_call_format"] == "chatml-hermes"
    assert start["request_fields"] == ["tool_choice", "tools"]
    first = next(e for e in events if e["type"] == "llm_call" and not e.get("error"))
    # the tools were rendered into the prompt: the server tokenized the schemas too
    text = run_trial(_spec("text", 0, 1), tmp_path / "text").document()
    assert text["error"] is None, text["error"]
    text_first = next(e for e in _main_run(tmp_path / "text" / "trace.jsonl")
                      if e["type"] == "llm_call" and not e.get("error"))
    assert first["usage"]["prompt_tokens"] > text_first["usage"]["prompt_tokens"] + 150, (
        first["usage"], text_first["usage"])
    steps = [e for e in events if e["type"] in ("action", "format_error")]
    assert steps, "no step was taken"
    for e in steps:  # a call ran, or the reply had none / a bad one and was told so
        assert e["type"] == "action" or e["error"]
