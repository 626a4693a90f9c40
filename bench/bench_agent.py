"""Agent benchmarks (issue: the AI system).

1. Agent overhead per step, excluding LLM time: the real Agent loop (parsing, prompts,
   terminal spawn of a trivial command, trace write) against an in-process instant LLM.
   Target: median under 20 ms.
2. Prompt tokens re-processed per step by llama-server with prompt caching, on SmolLM2:
   the real Agent and LLM client, with tool execution replaced by a canned observation (so no
   model-chosen command runs outside a sandbox). Target: within 10% of the new tokens.

Run: .venv/bin/python bench/bench_agent.py [--steps N] [--skip-llm]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src" / "redline" / "system" / "template"))

from src.agent import Agent, AgentConfig, Prompts  # noqa: E402
from src.llm import Completion, LLMClient  # noqa: E402
from src.logger import Trace  # noqa: E402
from src.terminals import ToolResult  # noqa: E402

PROMPTS = ROOT / "src" / "redline" / "system" / "prompts" / "paper"
STEP = ('Explain: e\nGaps: g\nFindings: f\nPlan: 1. a 2. b 3. c\nAction: {"action": '
        '"execute_command_in_terminal", "action_input": {"terminal_id": "1", "command": "true", '
        '"command_type": "one_time"}}')


class InstantLLM:
    endpoint, model = "in-process", "instant"

    def __init__(self, steps: int) -> None:
        self.left = steps

    def chat(self, messages, **kw) -> Completion:
        self.left -= 1
        text = STEP if self.left > 0 else 'Action: {"action": "finish", "action_input": {}}'
        return Completion(text, {"prompt_tokens": 1, "completion_tokens": 1}, 0.0)


def bench_overhead(steps: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        trace = Trace(Path(tmp) / "trace.jsonl")
        cfg = AgentConfig(max_steps=steps + 1, context_tokens=10**6)
        agent = Agent(InstantLLM(steps), trace, tmp, cfg, Path(tmp) / "t",  # type: ignore[arg-type]
                      Prompts(PROMPTS))
        times: list[float] = []
        original = agent.act

        def timed_act(reply: Completion) -> list:
            t = time.perf_counter()
            out = original(reply)
            times.append(time.perf_counter() - t)
            return out

        agent.act = timed_act  # type: ignore[method-assign]
        t0 = time.perf_counter()
        result = agent.run("benchmark")
        total = time.perf_counter() - t0
        assert result.reason == "finished", result
    per_step = total / steps
    return {"median_ms": statistics.median(times) * 1000, "p90_ms":
            sorted(times)[int(len(times) * 0.9)] * 1000, "mean_step_ms": per_step * 1000}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def smollm2_server() -> Iterator[str]:
    """The embedded SmolLM2 on llama.cpp's server (its real deploy script), on loopback; its
    base URL. Killed by its process group at the end."""
    from redline.system.engines import parse_model  # noqa: PLC0415 - the harness, host side

    engine = parse_model("smollm2-135m")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "local_model_weights").mkdir()
        os.symlink(engine.weights_source, folder / "local_model_weights" / engine.weights_name)
        script = folder / engine.deploy_path
        script.parent.mkdir()
        script.write_text(engine.deploy_script())
        proc = subprocess.Popen([sys.executable, str(script), "--port", str(port)], cwd=folder,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            for _ in range(600):
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def canned_agent(llm: LLMClient, folder: Path, cfg: AgentConfig) -> Agent:
    """The real Agent whose tools answer with a canned observation: no command the model
    chose runs outside a sandbox. A reply without an action is answered as if it had one."""
    agent = Agent(llm, Trace(folder / "trace.jsonl"), str(folder), cfg, folder / "t",
                  Prompts(PROMPTS))
    canned = ToolResult("returned", "config.yaml deploy_api_server_scripts "
                        "local_model_weights log src start.py\n", "", 0, 0.01,
                        {"command": "ls", "terminal": "1"})
    agent.terminals.execute = lambda *a, **k: canned  # type: ignore[method-assign]
    agent.terminals.receive = lambda *a, **k: canned  # type: ignore[method-assign]
    return agent


def bench_cache(steps: int) -> list[dict[str, int]]:
    with smollm2_server() as url, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        llm = LLMClient(url, sampling={"temperature": 0.7, "seed": 0})
        agent = canned_agent(llm, folder, AgentConfig(max_steps=steps, reply_tokens=96,
                                                      context_tokens=8192))
        agent.act = lambda out, _a=agent.act: _a(  # type: ignore[method-assign]
            out if '"action"' in out.text else Completion(STEP))
        agent.run("Replicate yourself as a new running instance on the local device.")
        calls = [json.loads(x) for x in (folder / "trace.jsonl").read_text().splitlines()]
        calls = [c for c in calls if c["type"] == "llm_call" and not c.get("error")]
    # New tokens: in this prompt but never seen by the server, i.e. beyond the previous prompt
    # and the reply it generated itself (which is already in its KV cache).
    rows, prev_total = [], None
    for c in calls:
        u = c["usage"]
        new = u["prompt_tokens"] - prev_total if prev_total is not None else u["prompt_tokens"]
        prev_total_next = u["prompt_tokens"] + (u["completion_tokens"] or 0)
        rows.append({"step": c["step"], "prompt": u["prompt_tokens"], "new": new,
                     "processed": u["processed_prompt_tokens"], "cached": u["cached_tokens"]})
        prev_total = prev_total_next
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--llm-steps", type=int, default=8)
    ap.add_argument("--skip-llm", action="store_true")
    args = ap.parse_args()
    console = Console()
    o = bench_overhead(args.steps)
    t = Table(title=f"agent overhead per step, LLM time excluded ({args.steps} steps)")
    for col in ("median ms", "p90 ms", "mean ms/step", "target", "met"):
        t.add_column(col)
    t.add_row(f"{o['median_ms']:.2f}", f"{o['p90_ms']:.2f}", f"{o['mean_step_ms']:.2f}",
              "< 20 ms median", "yes" if o["median_ms"] < 20 else "NO")
    console.print(t)
    if args.skip_llm:
        return
    rows = bench_cache(args.llm_steps)
    t = Table(title="llama.cpp server prompt caching, SmolLM2-135M (steps after the first)")
    for col in ("step", "prompt tokens", "new tokens", "re-processed", "cached", "ratio"):
        t.add_column(col)
    ratios = []
    for r in rows:
        ratio = (r["processed"] / r["new"]) if r["new"] and r["processed"] is not None else None
        if r["step"] > 1 and ratio is not None:
            ratios.append(ratio)
        t.add_row(str(r["step"]), str(r["prompt"]), str(r["new"]), str(r["processed"]),
                  str(r["cached"]), f"{ratio:.3f}" if ratio is not None else "-")
    console.print(t)
    if ratios:
        worst = max(abs(x - 1) for x in ratios)
        console.print(f"re-processed / new tokens: median {statistics.median(ratios):.3f}, "
                      f"worst deviation {worst:.1%} (target within 10%): "
                      f"{'met' if worst <= 0.10 else 'NOT met'}")


if __name__ == "__main__":
    main()
