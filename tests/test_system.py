"""The AI system: build a folder, start both processes, talk to /chat, read the trace."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import free_port

from redline.system.builder import build_system, read_config
from redline.system.engines import EngineError, parse_model
from redline.system.launcher import LaunchError, start_system

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


def start(folder: Path, reap: list[int], engine: str = "scripted") -> tuple[int, int]:
    llm_port, agent_port = free_port(), free_port()
    running = start_system(str(folder), engine, llm_port=llm_port, agent_port=agent_port,
                           log_dir=folder / "log", python=sys.executable, llm_timeout_s=30)
    reap.extend([running.llm_pid, running.agent_pid])
    return llm_port, agent_port


def test_scripted_system_runs_a_task_and_traces_every_event(tmp_path: Path, reap) -> None:
    weights = tmp_path / "w.yaml"
    weights.write_text(SCRIPT)
    folder = build_system(f"scripted:{weights}", tmp_path / "sys")
    for part in ("start.py", "src/agent.py", "deploy/scripted.sh", "requirements.txt", "static",
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
                                               if p.suffix in (".py", ".sh", ".yaml"))
    p1, a1 = start(copy, reap)
    # second instance of the same copy on other ports
    copy2 = tmp_path / "c"
    subprocess.run(["cp", "-r", str(copy), str(copy2)], check=True)
    p2, a2 = start(copy2, reap)
    for port in (a1, a2):
        r = httpx.post(f"http://127.0.0.1:{port}/chat", json={"message": "Hello!"}, timeout=30)
        assert r.json()["message"] == "Hello! How can I help you today?"


def test_agent_exits_with_clear_error_when_llm_is_down(tmp_path: Path) -> None:
    weights = tmp_path / "w.yaml"
    weights.write_text(SCRIPT)
    folder = build_system(f"scripted:{weights}", tmp_path / "sys")
    cfg = read_config(folder)
    cfg["llm"]["startup_wait_s"] = 0.5
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "start.py", "--port", str(free_port()), "--llm-port",
                           str(free_port())], cwd=folder, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 1
    assert "is not up" in proc.stderr and "deploy/scripted.sh" in proc.stderr


def test_launch_error_names_the_log(tmp_path: Path) -> None:
    weights = tmp_path / "w.yaml"
    weights.write_text("not: [valid")
    folder = build_system(f"scripted:{weights}", tmp_path / "sys")
    with pytest.raises(LaunchError, match="llm_server.log"):
        start_system(str(folder), "scripted", llm_port=free_port(), agent_port=free_port(),
                     log_dir=folder / "log", python=sys.executable, llm_timeout_s=10)


def test_scripted_server_rules(agent_src, tmp_path: Path) -> None:
    from src.scripted_server import DEFAULT, reply_for

    rules = [{"match": "alpha", "responses": ["a0", "a1"]}, {"responses": ["any0"]}]
    user = {"role": "user", "content": "say alpha"}
    assert reply_for(rules, [user]) == "a0"
    assert reply_for(rules, [user, {"role": "assistant", "content": "x"}, user]) == "a1"
    assert reply_for(rules, [user] + [{"role": "assistant", "content": "x"}] * 2) == DEFAULT
    assert reply_for(rules, [{"role": "user", "content": "beta"}]) == "any0"
    assert reply_for([{"match": "zzz", "responses": ["r"]}], [user]) == DEFAULT
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


def test_vllm_deploy_script_follows_the_documented_cli(tmp_path: Path) -> None:
    model = tmp_path / "Qwen2.5-72B-Instruct"
    model.mkdir()
    (model / "config.json").write_text("{}")
    script = parse_model(f"vllm:{model}").deploy_script()
    assert ' serve "$HERE/local_model_weights/Qwen2.5-72B-Instruct"' in script
    for flag in ("--port \"$PORT\"", "--host 127.0.0.1", "--served-model-name local",
                 "--max-model-len", "--tensor-parallel-size 1", "--gpu-memory-utilization"):
        assert flag in script
    out = subprocess.run(["bash", "-n", "-c", script], capture_output=True)
    assert out.returncode == 0


def test_smollm2_deploy_script_uses_the_bundled_gguf() -> None:
    engine = parse_model("smollm2-135m")
    assert engine.weights_source.name.endswith(".gguf") and engine.weights_source.exists()
    script = engine.deploy_script()
    assert "llama-server" in script and "--metrics" in script and engine.weights_name in script
