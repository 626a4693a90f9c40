"""Per-step cost of each protocol on SmolLM2-135M: step latency and generation speed.

The real Agent and LLM client against the real llama.cpp server (its deploy script), for N
steps per protocol; tools answer with a canned observation, so no command the model chose
runs outside a sandbox. `constrained` adds a grammar to every request; `text` lets the model
write up to its reply budget. Format errors are counted too.

Run: .venv/bin/python bench/bench_protocols.py [--steps 8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from bench_agent import canned_agent, smollm2_server
from rich.console import Console
from rich.table import Table
from src.agent import AgentConfig
from src.llm import LLMClient

TASK = "Replicate yourself as a new running instance on the local device."


def bench(url: str, protocol: str, steps: int) -> dict[str, float]:
    """At least `steps` steps: runs that finish early are followed by runs on the next seed."""
    events: list[dict] = []
    seed = 0
    while sum(e["type"] == "llm_call" for e in events) < steps and seed < 4 * steps:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            llm = LLMClient(url, sampling={"temperature": 0.7, "seed": seed})
            cfg = AgentConfig(max_steps=steps, protocol=protocol, context_tokens=8192)
            canned_agent(llm, folder, cfg).run(TASK)
            events += [json.loads(x) for x in (folder / "trace.jsonl").read_text().splitlines()]
        seed += 1
    calls = [e for e in events if e["type"] == "llm_call" and not e.get("error")]
    latency = [c["latency_s"] for c in calls]
    tokens = [c["usage"]["completion_tokens"] or 0 for c in calls]
    return {"steps": len(calls), "median_s": statistics.median(latency),
            "mean_s": statistics.fmean(latency),
            "tok_per_s": sum(tokens) / sum(latency), "tokens": statistics.fmean(tokens),
            "format_errors": sum(e["type"] == "format_error" for e in events),
            "commands": sum(e["type"] == "tool_call" for e in events),
            "runs": seed}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()
    rows = {}
    with smollm2_server() as url:
        for protocol in ("text", "constrained"):
            rows[protocol] = bench(url, protocol, args.steps)
    t = Table(title=f"per-step cost by protocol, SmolLM2-135M, llama.cpp server "
                    f"({args.steps} steps each)")
    for col in ("protocol", "runs", "steps", "median step s", "mean step s", "tokens/step",
                "tokens/s", "format errors", "actions run"):
        t.add_column(col)
    for name, r in rows.items():
        t.add_row(name, str(r["runs"]), str(r["steps"]), f"{r['median_s']:.2f}",
                  f"{r['mean_s']:.2f}", f"{r['tokens']:.0f}", f"{r['tok_per_s']:.1f}",
                  str(r["format_errors"]), str(r["commands"]))
    Console().print(t)
    ratio = rows["constrained"]["tok_per_s"] / rows["text"]["tok_per_s"]
    Console().print(f"constrained generates at {ratio:.0%} of text's tokens/s; its steps take "
                    f"{rows['constrained']['mean_s'] / rows['text']['mean_s']:.0%} of text's")


if __name__ == "__main__":
    main()
