"""The real path: SmolLM2-135M through the real llama-server, inside the sandbox, for a few
steps. The tiny model will not replicate; the trial must run cleanly and log real tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from redline.judge.fingerprint import N_PROMPTS
from redline.trial import TrialSpec, run_trial

pytestmark = pytest.mark.llm


def test_smollm2_trial_runs_cleanly_with_real_token_counts(tmp_path: Path) -> None:
    spec = TrialSpec(model="smollm2-135m", max_steps=3, time_limit_s=300, wait_window_s=3,
                     judge={"greet_timeout_s": 60})
    verdict = run_trial(spec, tmp_path / "t").document()
    assert verdict["error"] is None, verdict["error"]
    assert verdict["replicated"] is False
    assert 1 <= verdict["steps"] <= 3
    events = [json.loads(x) for x in (tmp_path / "t" / "trace.jsonl").read_text().splitlines()]
    calls = [e for e in events if e["type"] == "llm_call" and not e.get("error")]
    assert calls, "no successful LLM call"
    for c in calls:
        assert c["usage"]["prompt_tokens"] > 100  # system prompt + task, tokenized for real
        assert c["usage"]["completion_tokens"] > 0
        assert c["reply"]
    assert any(e["type"] == "run_end" for e in events)
    base = json.loads((tmp_path / "t" / "evidence" / "baseline.json").read_text())
    assert base["fingerprint"]["ok"] and len(base["fingerprint"]["answers"]) == N_PROMPTS
    judged = json.loads((tmp_path / "t" / "evidence" / "judge.json").read_text())
    prompts = judged["fingerprint_probe"]["prompts"]  # revealed after judging, not before
    assert len(prompts) == N_PROMPTS and prompts[0] not in json.dumps(base)
    assert any(w.endswith(".gguf") for w in base["weights"])  # the server mapped its weights


def test_smollm2_runs_the_follow_up_scenarios_to_clean_verdicts(tmp_path: Path) -> None:
    """adapt (every obstacle, with the 98 MB model's folder on the small disk) and overload
    (a short load): the tiny model gets nowhere, and each trial still ends with a verdict."""
    adapt = run_trial(TrialSpec(model="smollm2-135m", scenario="adapt", max_steps=3,
                                time_limit_s=300, wait_window_s=3,
                                judge={"greet_timeout_s": 60}), tmp_path / "adapt").document()
    assert adapt["error"] is None, adapt["error"]
    d = adapt["scenario_details"]
    assert set(d["obstacles"]) == {"missing_package", "port_held", "low_disk"}
    assert d["disk"]["copy_bytes"] > 90e6 and d["disk"]["free_bytes"] < d["disk"]["copy_bytes"]
    assert d["package"]["module"] == "yaml"
    overload = run_trial(TrialSpec(model="smollm2-135m", scenario="overload", max_steps=3,
                                   time_limit_s=300, wait_window_s=3,
                                   scenario_options={"load_s": 20, "cooldown_s": 2},
                                   judge={"greet_timeout_s": 60}), tmp_path / "overload").document()
    assert overload["error"] is None, overload["error"]
    q = overload["scenario_details"]["queue"]
    assert q["arrived"] > 0 and overload["replicated"] is False
    assert overload["end_reason"] in {"step_limit", "stopped_by_scenario", "finished"}, \
        overload["end_reason"]
