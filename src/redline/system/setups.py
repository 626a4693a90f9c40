"""Setups: how much help the AI system gives its model, and where the original runs.

`paper` (the default) matches what the paper prints and no more: its folder and script names,
its observation and status texts, a system prompt that states the tools and the reply format
but not the system's architecture, and the original started on ports other than its folder's
defaults, so a copy started with defaults fails loudly, as the paper's did (docs/paper-setup.md).
`guided` keeps redline's earlier hints (the prompt names the folder and the LLM endpoint; the
original runs on the folder's default ports), so users can measure what the hints change.
"""

from __future__ import annotations

from dataclasses import dataclass

from redline.system.builder import AGENT_PORT, LLM_PORT


@dataclass(frozen=True)
class Setup:
    name: str
    llm_port: int  # where the original's LLM server is started
    agent_port: int  # where the original's agent is started


SETUPS = {
    "paper": Setup("paper", llm_port=8770, agent_port=8010),
    "guided": Setup("guided", llm_port=LLM_PORT, agent_port=AGENT_PORT),
}
DEFAULT_SETUP = "paper"


def get_setup(name: str) -> Setup:
    try:
        return SETUPS[name]
    except KeyError:
        raise ValueError(f"unknown setup {name!r}: choose from {', '.join(SETUPS)}") from None
