"""The three protocols (text, native, constrained): one tool definition makes the prompt's tool
text, the function schemas and the grammar; native tool calls run one action per round, and
every malformed reply gets a format-error observation; context fitting never orphans a tool
message; each protocol runs a whole trial in the sandbox to a verdict."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import yaml
from helpers import CONTROLS, TEMPLATE, run, step
from inspect_ai.log import read_eval_log
from typer.testing import CliRunner

from redline.analysis.inspect_export import export_inspect
from redline.analysis.report import build_report
from redline.cli import app
from redline.experiment.config import ExperimentError, expand, parse_experiment
from redline.experiment.runner import run_experiment
from redline.experiment.summary import write_summary
from redline.results import load_events
from redline.system.builder import BuildError, build_system
from redline.system.engines import EngineError, EngineOptions, parse_model
from redline.trial import TrialSpec, run_trial

PROMPTS = TEMPLATE.parent / "prompts"


def call(name: str, arguments: object) -> dict:
    return {"name": name, "arguments": arguments}


def native_reply(*calls: dict, content: str = "Explain: a native step.\nPlan: 1. act") -> dict:
    return {"content": content, "tool_calls": list(calls)}


def trial(tmp_path: Path, replies: list, protocol: str, **spec: object) -> tuple[dict, list]:
    model = tmp_path / "m.yaml"
    model.write_text(yaml.safe_dump([{"match": "Replicate yourself", "responses": replies}]))
    out = tmp_path / "t"
    v = run_trial(TrialSpec(model=f"scripted:{model}", time_limit_s=60, protocol=protocol,
                            **spec), out).document()
    events = [e for e in load_events(out / "trace.jsonl")
              if e.get("run_id") == _main_run(out / "trace.jsonl")]
    return v, events


def _main_run(trace: Path) -> str:
    return next(e["run_id"] for e in load_events(trace) if e["type"] == "run_start")


@pytest.mark.parametrize("setup", ["paper", "guided"])
def test_one_definition_makes_prompt_schemas_and_grammar(agent_src, setup: str) -> None:
    from src.tools import (
        ToolTexts,
        check_call,
        function_schemas,
        gbnf,
        prompt_entries,
        registry,
    )

    tools = registry(5)
    texts = ToolTexts(PROMPTS / setup / "tools.yaml", n_terminals=5, command_timeout_s=60,
                      wait_window_s=25)
    names = [t.name for t in tools]
    schemas = function_schemas(tools, texts)
    assert [s["function"]["name"] for s in schemas] == names
    assert [e["name"] for e in prompt_entries(tools, texts)] == names
    grammar = gbnf(tools)
    for name in names:
        assert json.dumps(name).replace('"', '\\"') in grammar
    execute = schemas[0]["function"]["parameters"]
    assert execute["required"] == ["command"]
    assert execute["properties"]["terminal_id"]["enum"] == ["1", "2", "3", "4", "5"]
    assert execute["properties"]["command_type"]["enum"] == ["one_time", "long_running"]
    for entry, tool in zip(prompt_entries(tools, texts), tools, strict=True):
        check_call(tools, tool.name, json.loads(entry["example"]))  # every example is valid
    assert "{" not in "".join(e["description"] for e in prompt_entries(tools, texts))


def test_the_system_prompt_says_what_each_protocol_needs(agent_src, tmp_path: Path) -> None:
    from src.agent import Agent, AgentConfig, Prompts
    from src.tools import prompt_entries

    class LLM:
        endpoint, model = "http://127.0.0.1:1/v1", "local"

    prompts = Prompts(PROMPTS / "paper")
    for protocol, has_action in [("text", True), ("constrained", True), ("native", False)]:
        agent = Agent(LLM(), None, str(tmp_path), AgentConfig(protocol=protocol),  # type: ignore[arg-type]
                      tmp_path / protocol, prompts)
        text = prompts.render("system.j2", workdir="w", llm_endpoint="e", n_terminals=5,
                              command_timeout_s=60, wait_window_s=25, protocol=protocol,
                              tools=[])
        assert ("Action: one JSON block" in text) is has_action
        fields = agent.protocol.request_fields()
        assert {"text": set(), "constrained": {"grammar"}, "native": {"tools", "tool_choice"}}[
            protocol] == set(fields)
    # the text protocol's prompt is the paper's, word for word as before
    text_agent = Agent(LLM(), None, str(tmp_path), AgentConfig(),  # type: ignore[arg-type]
                       tmp_path / "x", prompts)
    old = prompts.render("system.j2", workdir="w", llm_endpoint="e", n_terminals=5,
                         command_timeout_s=60, wait_window_s=25, protocol="text",
                         tools=prompt_entries(text_agent.tools, text_agent.tool_texts))
    assert 'action_input: {"terminal_id": "1", "command": "ls", "command_type": "one_time"}' in old
    assert "Registered tools:\n1. execute_command_in_terminal: run a command" in old


def test_context_fitting_drops_whole_rounds_never_a_lone_tool_message(agent_src,
                                                                      tmp_path: Path) -> None:
    from src.agent import Agent, AgentConfig, Prompts

    class LLM:
        endpoint, model = "http://127.0.0.1:1/v1", "local"

    agent = Agent(LLM(), None, str(tmp_path), AgentConfig(protocol="native",  # type: ignore[arg-type]
                                                          context_tokens=1200, reply_tokens=100),
                  tmp_path / "s", Prompts(PROMPTS / "paper"))
    agent.messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "task"}]
    for k in range(12):
        calls = [{"id": f"c{k}a", "type": "function", "function": {"name": "x", "arguments": "{}"}},
                 {"id": f"c{k}b", "type": "function", "function": {"name": "y", "arguments": "{}"}}]
        agent.messages += [{"role": "assistant", "content": "think " * 20, "tool_calls": calls},
                           {"role": "tool", "tool_call_id": f"c{k}a", "content": "out " * 60},
                           {"role": "tool", "tool_call_id": f"c{k}b", "content": "not run"}]
        agent.messages += [{"role": "assistant", "content": "no call"},
                           {"role": "user", "content": "format error " * 10}]
    agent.logged, agent.trimmed = len(agent.messages), 0
    agent._fit_context()
    assert agent.trimmed > 0 and agent.messages[:2][1]["content"] == "task"
    assert agent.messages[2]["role"] == "assistant"
    ids: set[str] = set()
    for m in agent.messages:
        ids |= {c["id"] for c in m.get("tool_calls") or []}
        if m["role"] == "tool":
            assert m["tool_call_id"] in ids  # its call is still there


def test_native_one_action_per_round_and_every_bad_call_is_a_format_error(tmp_path: Path) -> None:
    x = "execute_command_in_terminal"
    replies = [
        native_reply(call(x, {"terminal_id": "1", "command": "echo first > /root/one",
                              "command_type": "one_time"}),
                     call(x, {"terminal_id": "2", "command": "echo second > /root/two"})),
        {"content": "Explain: I only think this round."},  # no call
        native_reply(call("fly", {})),  # unknown tool
        native_reply(call(x, '{"terminal_id": "1", "command": ')),  # not valid JSON
        native_reply(call(x, {"terminal_id": "1"})),  # a required argument missing
        run("cat /root/one; ls /root"),  # a text reply: the server sends it as a tool call
        step("finish", message="done"),
    ]
    v, events = trial(tmp_path, replies, "native")
    assert v["error"] is None and v["protocol"] == "native" and v["end_reason"] == "finished"
    start = next(e for e in events if e["type"] == "run_start")
    assert start["protocol"] == "native" and start["request_fields"] == ["tool_choice", "tools"]
    assert start["tool_call_format"] == "scripted"
    tools = [e for e in events if e["type"] == "tool_call"]
    assert [t["command"] for t in tools] == ["echo first > /root/one", "cat /root/one; ls /root"]
    assert "first" in tools[1]["stdout"] and "two" not in tools[1]["stdout"]  # 2nd never ran
    errors = [e["error"] for e in events if e["type"] == "format_error"]
    assert len(errors) == 4
    assert "No tool call found" in errors[0] and "Unknown action 'fly'" in errors[1]
    assert "not valid JSON" in errors[2] and "needs the argument 'command'" in errors[3]
    # every call got its own tool message: the first the observation, the second "not run"
    second_call = next(e for e in events if e["type"] == "llm_call" and e["step"] == 2)
    answers = [m for m in second_call["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in answers] == ["call_0", "call_1"]
    assert "Short term command executed" in answers[0]["content"]
    assert "was not run" in answers[1]["content"]
    # a reply with no call is answered by a user message, never a tool message without a call
    third = next(e for e in events if e["type"] == "llm_call" and e["step"] == 3)
    assert [m["role"] for m in third["messages"]] == ["user"]  # the reply is logged apart
    assert "No tool call found" in third["messages"][-1]["content"]
    thinking = next(e for e in events if e["type"] == "action")["parsed"]
    assert thinking["explain"] == "a native step." and thinking["gaps"] == ""  # tolerated


def test_constrained_sends_the_grammar_and_runs_to_a_verdict(tmp_path: Path) -> None:
    v, events = trial(tmp_path, [run("echo hi"), step("finish", message="done")], "constrained")
    assert v["error"] is None and v["protocol"] == "constrained"
    start = next(e for e in events if e["type"] == "run_start")
    assert start["request_fields"] == ["grammar"]
    assert [e["command"] for e in events if e["type"] == "tool_call"] == ["echo hi"]


def test_an_engine_that_cannot_do_a_protocol_is_refused_before_anything_runs(
        tmp_path: Path) -> None:
    gguf = tmp_path / "plain.gguf"  # a GGUF whose chat template is neither tool-aware nor ChatML
    gguf.write_bytes(_gguf({"tokenizer.chat_template": "[INST] {{ messages }} [/INST]"}))
    engine = parse_model(f"gguf:{gguf}")
    with pytest.raises(EngineError, match="no tool support"):
        engine.protocol_plan("native")
    assert engine.protocol_plan("constrained").protocol == "constrained"
    with pytest.raises(BuildError, match="no tool support"):
        build_system(engine, tmp_path / "sys", protocol="native")
    assert not (tmp_path / "sys").exists()
    chatml = tmp_path / "chatml.gguf"
    chatml.write_bytes(_gguf({"tokenizer.chat_template": "<|im_start|>{{ m }}<|im_end|>"}))
    plan = parse_model(f"gguf:{chatml}").protocol_plan("native")
    assert plan.tool_call_format == "chatml-hermes" and plan.chat_template
    folder = build_system(f"gguf:{chatml}", tmp_path / "sys2", protocol="native")
    script = (folder / "deploy_api_server_scripts" / "deploy_api_server_chatml.py").read_text()
    assert "params.chat_template" in script
    assert (folder / "deploy_api_server_scripts" / "chat_template_tools.jinja").exists()
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    vllm = parse_model(f"vllm:{hf}")
    assert vllm.protocol_plan("native").server_args == (
        "--enable-auto-tool-choice", "--tool-call-parser", "hermes")
    vllm.options["tool_call_parser"] = "no_such_parser"
    with pytest.raises(EngineError, match="unknown vLLM tool-call parser 'no_such_parser'"):
        vllm.protocol_plan("native")
    (hf / "config.json").write_text(json.dumps({"model_type": "weird"}))
    with pytest.raises(EngineError, match="no vLLM tool-call parser known"):
        parse_model(f"vllm:{hf}").protocol_plan("native")
    with pytest.raises(EngineError, match="unknown protocol"):
        vllm.protocol_plan("telepathy")


def _gguf(kv: dict[str, str]) -> bytes:
    """A minimal GGUF v3 header holding string metadata only."""

    def s(text: str) -> bytes:
        raw = text.encode()
        return struct.pack("<Q", len(raw)) + raw

    body = b"".join(s(k) + struct.pack("<I", 8) + s(v) for k, v in kv.items())
    return b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv)) + body


def test_an_experiment_compares_protocols_in_cells_reports_and_exports(tmp_path: Path) -> None:
    exp = parse_experiment({
        "name": "p", "scenarios": ["replicate"], "trials": 2, "dry_run": {"seconds": 0},
        "models": [{"model": f"scripted:{CONTROLS / 'replicate-positive.yaml'}",
                    "name": "pos", "protocol": ["text", "native", "constrained"]},
                   {"model": f"scripted:{CONTROLS / 'replicate-positive.yaml'}",
                    "name": "plain"}]}, tmp_path)
    jobs = expand(exp)
    assert sorted({(j.model, j.spec.protocol) for j in jobs}) == [
        ("plain", "text"), ("pos+constrained", "constrained"), ("pos+native", "native"),
        ("pos+text", "text")]
    assert len({j.trial_id for j in jobs}) == len(jobs) == 8
    run_experiment(exp, tmp_path / "out")
    summary = write_summary(tmp_path / "out")
    assert sorted(c["model"] for c in summary["cells"]) == [
        "plain", "pos+constrained", "pos+native", "pos+text"]
    build_report(tmp_path / "out")
    data = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert sorted((r["model"], r["protocol"]) for r in data["outcomes"]) == [
        ("plain", "text"), ("pos+constrained", "constrained"), ("pos+native", "native"),
        ("pos+text", "text")]
    html = (tmp_path / "out" / "report.html").read_text()
    assert "<th>protocol</th>" in html and "not the paper’s free-text condition" in html
    logs = export_inspect(tmp_path / "out")
    assert len(logs) == 4 and any("pos-native" in p.name for p in logs)
    natives = [read_eval_log(str(p)) for p in logs if "native" in p.name]
    assert natives[0].eval.metadata["protocol"] == "native"
    assert all(s.metadata["protocol"] == "native" for s in natives[0].samples)


def test_bad_protocols_are_named_before_anything_runs(tmp_path: Path) -> None:
    gguf = tmp_path / "plain.gguf"
    gguf.write_bytes(_gguf({"tokenizer.chat_template": "[INST] {{ m }} [/INST]"}))
    for entry, needle in [({"model": f"gguf:{gguf}", "protocol": "native"}, "no tool support"),
                          ({"model": f"gguf:{gguf}", "protocol": "telepathy"}, "protocol"),
                          ({"model": f"gguf:{gguf}", "protocol": ["text", "text"]}, "once")]:
        with pytest.raises(ExperimentError, match=needle):
            parse_experiment({"scenarios": ["replicate"], "models": [entry]}, tmp_path)


def test_engine_options_reach_the_deploy_script_and_bad_ones_are_refused(tmp_path: Path) -> None:
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "weird"}))
    engine = parse_model(f"vllm:{hf}", EngineOptions(tool_call_parser="mistral",
                                                     tensor_parallel=2))
    plan = engine.protocol_plan("native")  # the user's parser: the family needs none
    assert plan.server_args[-1] == "mistral"
    script = engine.deploy_script(8760, plan)
    assert '"--tensor-parallel-size", "2"' in script and '"mistral"' in script
    chatml = tmp_path / "chatml.gguf"
    chatml.write_bytes(_gguf({"tokenizer.chat_template": "<|im_start|>{{ m }}<|im_end|>"}))
    script = parse_model(f"gguf:{chatml}", EngineOptions(threads=3, gpu_layers=7)).deploy_script()
    assert "n_threads = 3" in script and "n_gpu_layers = 7" in script
    runner = CliRunner()
    for args, needle in [(["-e", "bogus=1"], "bogus: Extra inputs"),
                         (["-e", "threads=0"], "threads: Input should be greater"),
                         (["-e", "novalue"], "write KEY=VALUE"),
                         (["--protocol", "native", "--model", f"gguf:{tmp_path / 'x.gguf'}"],
                          "not found"),
                         (["--protocol", "telepathy"], "telepathy")]:
        result = runner.invoke(app, ["run", "--out", str(tmp_path / "never"), *args])
        assert result.exit_code == 2, (args, result.output)
        assert needle in result.output, (args, result.output)
        assert not (tmp_path / "never").exists()
