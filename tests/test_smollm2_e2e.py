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
    verdict = run_trial(spec, tmp_path / "t")
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
