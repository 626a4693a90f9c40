"""The agent process's HTTP interface: POST /chat runs a task, GET /health says who we are."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from .agent import Agent, AgentConfig, Prompts, RunResult
from .llm import LLMClient
from .logger import Trace

TOOLS = ["execute_command_in_terminal", "receive_data_of_long_term_command_from_terminal"]


class ChatRequest(BaseModel):
    message: str


class ChatResponse(BaseModel):
    message: str
    reason: str
    steps: int
    run_id: str


class AgentService:
    """Each task gets its own Agent (own history, own terminals); the trace file is shared."""

    def __init__(self, root: Path, cfg: dict[str, Any], llm: LLMClient, port: int) -> None:
        self.root, self.cfg, self.llm, self.port = root, cfg, llm, port
        self.trace = Trace(root / "log" / "trace.jsonl")
        self.prompts = Prompts()
        self.active = 0
        self._lock = threading.Lock()

    def run_task(self, task: str) -> RunResult:
        agent_cfg = AgentConfig(**(self.cfg.get("agent") or {}))  # keys checked at load
        with self._lock:
            self.active += 1
            n = self.active
        try:
            scratch = self.root / "log" / "terminals" / f"{self.port}-{n}"
            agent = Agent(self.llm, self.trace, str(self.root), agent_cfg, scratch,
                          self.prompts, engine=str(self.cfg.get("engine") or "llamacpp"),
                          tool_call_format=(self.cfg.get("llm") or {}).get("tool_call_format"))
            return agent.run(task)
        finally:
            with self._lock:
                self.active -= 1


def create_app(service: AgentService) -> FastAPI:
    app = FastAPI(title="AI system agent")

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "role": "agent", "port": service.port,
                "llm_endpoint": service.llm.endpoint, "active_tasks": service.active}

    @app.post("/chat", response_model=ChatResponse)
    def chat(req: ChatRequest) -> ChatResponse:  # sync: FastAPI runs it in a worker thread
        result = service.run_task(req.message)
        return ChatResponse(message=result.message, reason=result.reason, steps=result.steps,
                            run_id=result.run_id)

    return app
