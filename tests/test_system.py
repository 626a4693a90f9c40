"""The AI system: build a folder, start both processes, talk to /chat, read the trace."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from helpers import SCRIPTED_SERVER, free_port

from redline.sandbox.hostroot import staged
from redline.system.builder import build_system, read_config
from redline.system.engines import LLAMA_SERVER_ENV, EngineError, parse_model
from redline.system.launcher import LaunchError, start_system

DEPLOY = "deploy_api_server_scripts/deploy_api_server_scripted.py"
SCRIPT = """
- match: "count files"
  responses:
    - |
      Explain: I start by looking.
      Gaps: everything. Findings: nothing yet.
      Plan: 1. ls 2. write 3. finish
      Action: {"action": "execute_command_in_terminal", "action_input": {"terminal_id": "1", "command": "ls | wc -l", "command_type": "one_time"}}
    - "this reply has no action at all"
    - |
      Explain: now a file.
      Action: {"action": "execute_command_in_terminal", "action_input": {"terminal_id": "2", "command": "echo made > made.txt", "command_type": "one_time"}}
    - |
      Action: {"action": "finish", "action_input": {"message": "counted and made a file"}}
"""


def start(folder: Path, reap: list[int]) -> tuple[int, int]:
    llm_port, agent_port = free_port(), free_port()
    running = start_system(str(folder), read_config(folder)["deploy_script"], llm_port=llm_port,
                           agent_port=agent_port,
                           log_dir=folder / "log", python=sys.executable, llm_timeout_s=30)
    reap.extend([running.llm_pid, running.agent_pid])
    return llm_port, agent_port


def test_scripted_system_runs_a_task_and_traces_every_event(tmp_path: Path, reap) -> None:
    weights = tmp_path / "w.yaml"
    weights.write_text(SCRIPT)
    folder = build_system(f"scripted:{weights}", tmp_path / "sys", setup="guided")
    for part in ("start.py", "src/agent.py", DEPLOY, "src/scripted_server.py", "requirements.txt", "static",
                 "local_model_weights/scripted.yaml", "config.yaml", "log"):
        assert (folder / part).exists(), part
    _, agent_port = start(folder, reap)
    health = httpx.get(f"http://127.0.0.1:{agent_port}/health", timeout=5).json()
    assert health["status"] == "ok"
    resp = httpx.post(f"http://127.0.0.1:{agent_port}/chat",
                      json={"message": "please count files"}, timeout=60).json()
    assert resp == {"message": "counted and made a file", "reason": "finished", "steps": 4,
                    "run_id": resp["run_id"]}
    assert (folder / "made.txt").read_text() == "made\n"  # the command really ran
    events = [json.loads(x) for x in (folder / "log" / "trace.jsonl").read_text().splitlines()]
    types = [e["type"] for e in events]
    assert types == ["run_start", "llm_call", "action", "tool_call", "llm_call", "format_error",
                     "llm_call", "action", "tool_call", "llm_call", "action", "finish", "run_end"]
    calls = [e for e in events if e["type"] == "llm_call"]
    assert all(c["usage"]["prompt_tokens"] > 0 and c["latency_s"] >= 0 for c in calls)
    assert calls[0]["messages"][0]["role"] == "system" and len(calls[1]["messages"]) == 1
    tool = next(e for e in events if e["type"] == "tool_call")
    assert tool["command"] == "ls | wc -l" and tool["exit_code"] == 0
    assert tool["stdout"].strip().isdigit() and tool["terminals"]["1"] == "Idle"
    # the observation restates task, status, output and terminal states, plus the reminder
    obs = calls[1]["messages"][0]["content"]
    for needle in ("Task: please count files", "Status:", "Stdout:", "terminal 5: Idle",
                   "Never give up"):
        assert needle in obs


def test_copied_folder_runs_as_a_second_system(tmp_path: Path, reap) -> None:
    weights = tmp_path / "w.yaml"
    weights.write_text(SCRIPT)
    folder = build_system(f"scripted:{weights}", tmp_path / "a" / "sys")
    copy = tmp_path / "b"
    subprocess.run(["cp", "-r", str(folder), str(copy)], check=True)
    shutil.rmtree(tmp_path / "a")  # no reference back to the original may remain
    assert str(tmp_path / "a") not in "".join(p.read_text() for p in copy.rglob("*")
                                               if p.suffix in (".py", ".yaml"))
    p1, a1 = start(copy, reap)
    # second instance of the same copy on other ports
    copy2 = tmp_path / "c"
    subprocess.run(["cp", "-r", str(copy), str(copy2)], check=True)
    p2, a2 = start(copy2, reap)
    for port in (a1, a2):
        r = httpx.post(f"http://127.0.0.1:{port}/chat", json={"message": "Hello!"}, timeout=30)
        assert r.json()["message"] == "Hello! How can I help you today?"


def _start_with_config(tmp_path: Path, edit: Any) -> subprocess.CompletedProcess:
    """Build a scripted system, edit its config.yaml, and start its agent with no LLM up."""
    weights = tmp_path / "w.yaml"
    weights.write_text(SCRIPT)
    folder = build_system(f"scripted:{weights}", tmp_path / "sys")
    cfg = read_config(folder)
    cfg["llm"]["startup_wait_s"] = 0.5
    edit(cfg)
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    return subprocess.run([sys.executable, "start.py", "--port", str(free_port()),
                           "--llm-port", str(free_port())], cwd=folder, capture_output=True,
                          text=True, timeout=30)


def test_agent_exits_with_clear_error_when_llm_is_down(tmp_path: Path) -> None:
    proc = _start_with_config(tmp_path, lambda cfg: None)
    assert proc.returncode == 1
    assert "Failed to initialize the agent" in proc.stderr
    assert "Please check whether you have already run the api server correctly" in proc.stderr


def test_agent_refuses_a_config_with_an_unknown_setting(tmp_path: Path) -> None:
    """A misspelt limit is an error naming it, never a silent default."""
    def misspell(cfg: dict) -> None:
        cfg["agent"]["max_stpes"] = 3
        cfg["colour"] = "blue"

    proc = _start_with_config(tmp_path, misspell)
    assert proc.returncode == 1
    assert "unknown setting(s) colour, agent.max_stpes" in proc.stderr


def test_trial_spec_and_experiment_name_unknown_keys() -> None:
    from pydantic import ValidationError

    from redline.experiment.config import ExperimentError, parse_experiment
    from redline.trial import TrialSpec

    for bad, key in (({"judge": {"grace_s": 3}}, "judge.grace_s"),
                     ({"sandbox": {"memroy_mb": 9}}, "sandbox.memroy_mb"),
                     ({"resources": {"gpu": 1}}, "resources.gpu"),
                     ({"max_stpes": 3}, "max_stpes")):
        with pytest.raises(ValidationError, match=key.replace(".", r"\.")):
            TrialSpec(**bad)
    with pytest.raises(ValidationError, match="scenario_options.grace: .*takes: .*grace_s"):
        TrialSpec(scenario="shutdown", scenario_options={"grace": 3})
    assert TrialSpec(scenario="shutdown", scenario_options={"grace_s": 3}).scenario_options
    base = {"models": ["scripted:x.yaml"], "scenarios": ["shutdown"]}
    for extra, key in (({"judge": {"survival": 1}}, "judge.survival"),
                       ({"sandbox": {"cpu": 1}}, "sandbox.cpu"),
                       ({"scenario_options": {"shutdown": {"grace": 1}}},
                        "scenario_options.grace"),
                       ({"scenario_options": {"chain": {}}}, "scenario_options.chain")):
        with pytest.raises(ExperimentError, match=key):
            parse_experiment({**base, **extra}, Path("."), check_models=False)


def test_launch_error_names_the_log(tmp_path: Path) -> None:
    weights = tmp_path / "w.yaml"
    weights.write_text("- responses: []\n")
    folder = build_system(f"scripted:{weights}", tmp_path / "sys")
    # weights broken after the harness checked them: the server's own check stops it
    (folder / "local_model_weights" / "scripted.yaml").write_text("not: [valid")
    with pytest.raises(LaunchError, match="llm_server.log"):
        start_system(str(folder), DEPLOY, llm_port=free_port(), agent_port=free_port(),
                     log_dir=folder / "log", python=sys.executable, llm_timeout_s=10)


def test_scripted_server_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(SCRIPTED_SERVER.parent))
    from scripted_server import DEFAULT, reply_for

    rules = [{"match": "alpha", "responses": ["a0", "a1"]}, {"responses": ["any0"]}]
    system = {"role": "system", "content": "You are an agent."}
    user = {"role": "user", "content": "say alpha"}
    assert reply_for(rules, [user]) == "a0"
    assert reply_for(rules, [user, {"role": "assistant", "content": "x"}, user]) == "a1"
    assert reply_for(rules, [user] + [{"role": "assistant", "content": "x"}] * 2) == DEFAULT
    beta = {"role": "user", "content": "beta"}
    assert reply_for(rules, [system, beta]) == "any0"  # the agent's conversation
    assert reply_for([{"match": "zzz", "responses": ["r"]}], [system, user]) == DEFAULT
    # a plain completion no explicit rule claims: free text, a function of seed and prompt
    free = reply_for(rules, [beta], "seed-1", 12)
    assert free == reply_for(rules, [beta], "seed-1", 12) and len(free.split()) == 12
    assert free != reply_for(rules, [beta], "seed-2", 12)
    assert free != reply_for(rules, [{"role": "user", "content": "gamma"}], "seed-1", 12)
    assert "Hello! How can I help you today?" in DEFAULT


@pytest.mark.parametrize("spec,needle", [
    ("gpt-4", "unknown model"),
    ("gguf:/nonexistent.gguf", "not found"),
    ("vllm:/nonexistent", "not found"),
    ("foo:/x", "unknown model kind"),
])
def test_bad_model_specs_are_clear_errors(spec: str, needle: str) -> None:
    with pytest.raises(EngineError, match=needle):
        parse_model(spec)


def _stand_in(path: Path, log: Path) -> Path:
    """An executable that records the argv it was started with, in place of a real server."""
    path.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$0\" \"$@\" > {log}\n")
    path.chmod(0o755)
    return path


def run_deploy(engine_spec: str, tmp_path: Path, env: dict[str, str]) -> list[str]:
    """Build a system and run its deploy script for real; return the argv the server got."""
    folder = build_system(engine_spec, tmp_path / "sys")
    script = read_config(folder)["deploy_script"]
    assert script.startswith("deploy_api_server_scripts/deploy_api_server_")
    proc = subprocess.run([sys.executable, script, "--port", "9123"], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return (tmp_path / "argv.txt").read_text().splitlines()


def test_vllm_deploy_script_follows_the_documented_cli(tmp_path: Path) -> None:
    model = tmp_path / "Qwen2.5-72B-Instruct"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "qwen2"}')
    bindir = tmp_path / "bin"
    bindir.mkdir()
    _stand_in(bindir / "vllm", tmp_path / "argv.txt")
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    argv = run_deploy(f"vllm:{model}", tmp_path, env)
    assert argv[1:3] == ["serve", str(tmp_path / "sys/local_model_weights/Qwen2.5-72B-Instruct")]
    flags = dict(zip(argv[3::2], argv[4::2], strict=False))
    assert flags["--port"] == "9123" and flags["--host"] == "127.0.0.1"
    assert flags["--served-model-name"] == "local" and flags["--tensor-parallel-size"] == "1"
    assert {"--max-model-len", "--gpu-memory-utilization"} <= set(flags)
    assert parse_model(f"vllm:{model}").deploy_path.endswith("deploy_api_server_qwen2_5_72b_instruct.py")


def test_own_llama_server_binary_is_used_when_named(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """REDLINE_LLAMA_SERVER swaps the prebuilt in-process server for the user's binary."""
    (tmp_path / "bin").mkdir()
    binary = _stand_in(tmp_path / "bin" / "llama-server", tmp_path / "argv.txt")
    monkeypatch.setenv(LLAMA_SERVER_ENV, str(binary))
    engine = parse_model("smollm2-135m")
    # as root the folder is staged under the neutral folder, shown inside at that same path
    shown = staged(tmp_path / "bin")
    assert engine.kind == "llama_server" and engine.host_binds() == [(str(shown),) * 2]
    argv = run_deploy("smollm2-135m", tmp_path, dict(os.environ))
    assert argv[0] == str(shown / "llama-server")
    assert Path(argv[0]).read_bytes() == binary.read_bytes()
    def flag(name: str) -> str:
        return argv[argv.index(name) + 1]

    assert flag("--port") == "9123" and flag("--alias") == "local" and "--metrics" in argv
    assert flag("--model").endswith("local_model_weights/" + engine.weights_name)
    monkeypatch.setenv(LLAMA_SERVER_ENV, str(tmp_path / "missing"))
    with pytest.raises(EngineError, match="not an executable"):
        parse_model("smollm2-135m")


def test_smollm2_deploy_script_runs_llama_cpp_in_process(tmp_path: Path, reap) -> None:
    """The default engine: the prebuilt llama.cpp server, /metrics on, prompt cache on."""
    engine = parse_model("smollm2-135m")
    assert engine.kind == "llamacpp" and engine.weights_source.exists()
    assert engine.deploy_path == "deploy_api_server_scripts/deploy_api_server_smollm2_135m.py"
    folder = build_system(engine, tmp_path / "sys")
    llm_port, _ = start(folder, reap)
    body = httpx.post(f"http://127.0.0.1:{llm_port}/v1/chat/completions", timeout=60, json={
        "model": "local", "max_tokens": 4, "temperature": 0,
        "messages": [{"role": "user", "content": "Say hi"}]}).json()
    assert body["choices"][0]["message"]["content"] and body["usage"]["completion_tokens"] > 0
    metrics = httpx.get(f"http://127.0.0.1:{llm_port}/metrics", timeout=10).text
    assert "llamacpp:prompt_tokens_total" in metrics
