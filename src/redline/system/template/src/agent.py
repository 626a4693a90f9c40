"""The agent loop: ask the LLM, parse its five-part reply, run the action, observe, repeat.

Control flow uses a few exceptions (format error, submitted, limits exceeded); every LLM
call and tool call goes to the trace as it happens. How the action travels (a JSON block in
the text, a native tool call, grammar-constrained text) is the protocol's business
(protocols.py).
"""

from __future__ import annotations

import collections
import json
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from .llm import Completion, ContextOverflow, LLMClient, LLMError
from .logger import Trace
from .parsing import FormatError
from .protocols import make_protocol
from .terminals import Terminals
from .tools import ToolTexts, prompt_entries, registry

PROMPTS_DIR = Path(__file__).parent / "prompts"
log = logging.getLogger("agent")


class Prompts:
    """The texts the model reads: templates and status sentences from one prompts folder."""

    def __init__(self, folder: Path = PROMPTS_DIR) -> None:
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)),
                                      undefined=jinja2.StrictUndefined,
                                      keep_trailing_newline=True)
        self.env.filters["pyrepr"] = repr
        self.folder = folder
        self.statuses: dict[str, str] = yaml.safe_load((folder / "status.yaml").read_text())

    def render(self, name: str, **values: Any) -> str:
        return self.env.get_template(name).render(**values)

    def status(self, code: str, **facts: Any) -> str:
        return self.statuses[code].format_map(collections.defaultdict(str, facts))


class Submitted(Exception):
    """The model chose the finish action."""


class LimitsExceeded(Exception):
    """Step or time limit reached."""


@dataclass
class AgentConfig:
    max_steps: int = 30
    time_limit_s: float = 1800.0
    command_timeout_s: float = 60.0
    wait_window_s: float = 25.0
    max_output_chars: int = 4000
    context_tokens: int = 8192
    reply_tokens: int = 512
    n_terminals: int = 5
    protocol: str = "text"  # text | native | constrained (protocols.py)
    tool_choice: str = "auto"  # native: what `tool_choice` asks of the server
    section_chars: int = 160  # constrained: the grammar's cap on each thinking section


@dataclass
class RunResult:
    message: str
    reason: str
    steps: int
    run_id: str


def estimate_tokens(messages: list[dict[str, Any]]) -> int:
    """Cheap, conservative token estimate (about 3.5 characters per token, plus overhead)."""
    return sum((len(m.get("content") or "") + len(json.dumps(m.get("tool_calls") or "")))
               // 3 + 4 for m in messages)


class Agent:
    def __init__(self, llm: LLMClient, trace: Trace, workdir: str, config: AgentConfig,
                 scratch: Path, prompts: Prompts | None = None, engine: str = "llamacpp",
                 tool_call_format: str | None = None) -> None:
        self.llm, self.trace, self.workdir, self.config = llm, trace, workdir, config
        self.prompts = prompts or Prompts()
        self.tool_call_format = tool_call_format
        c = config
        self.tools = registry(c.n_terminals)
        self.tool_texts = ToolTexts(self.prompts.folder / "tools.yaml", n_terminals=c.n_terminals,
                                    command_timeout_s=int(c.command_timeout_s),
                                    wait_window_s=int(c.wait_window_s))
        self.protocol = make_protocol(c.protocol, self.tools, self.tool_texts, engine=engine,
                                      tool_choice=c.tool_choice, section_chars=c.section_chars)
        self.terminals = Terminals(
            workdir, scratch, config.n_terminals, config.command_timeout_s,
            config.wait_window_s, config.max_output_chars,
        )

    def run(self, task: str) -> RunResult:
        self.run_id = uuid.uuid4().hex[:12]
        self.task = task
        self.deadline = time.monotonic() + self.config.time_limit_s
        c = self.config
        self.messages: list[dict[str, Any]] = [
            {"role": "system", "content": self.prompts.render(
                "system.j2", workdir=self.workdir, llm_endpoint=self.llm.endpoint,
                n_terminals=c.n_terminals, command_timeout_s=int(c.command_timeout_s),
                wait_window_s=int(c.wait_window_s), protocol=self.protocol.name,
                tools=prompt_entries(self.tools, self.tool_texts))},
            {"role": "user", "content": self.prompts.render("task.j2", task=task)},
        ]
        self.logged, self.trimmed, self.step = 0, 0, 0
        self._event("run_start", task=task, llm_endpoint=self.llm.endpoint, model=self.llm.model,
                    limits={"max_steps": c.max_steps, "time_limit_s": c.time_limit_s},
                    protocol=self.protocol.name, tool_call_format=self.tool_call_format,
                    request_fields=sorted(self.protocol.request_fields()))
        try:
            while True:
                self.step += 1
                log.info("*****Round %d:*****", self.step)
                if self.step > c.max_steps:
                    raise LimitsExceeded(f"step limit of {c.max_steps} reached")
                if time.monotonic() > self.deadline:
                    raise LimitsExceeded(f"time limit of {c.time_limit_s:.0f} s reached")
                self.messages.extend(self.act(self.query()))
        except Submitted as done:
            return self._end("finished", str(done))
        except LimitsExceeded as exc:
            reason = "step_limit" if "step" in str(exc) else "time_limit"
            return self._end(reason, str(exc))
        except LLMError as exc:
            return self._end("llm_error", str(exc))
        except Exception as exc:  # noqa: BLE001 - a task must end with a stated error
            return self._end("error", f"{type(exc).__name__}: {exc}")

    def _event(self, type_: str, **fields: Any) -> None:
        self.trace.event(type_, run_id=self.run_id, **fields)

    def _end(self, reason: str, message: str) -> RunResult:
        steps = min(self.step, self.config.max_steps)
        self._event("run_end", reason=reason, message=message, steps=steps)
        return RunResult(message, reason, steps, self.run_id)

    def _fit_context(self) -> None:
        """Drop the oldest half of the history when over budget (keeps the cache useful).

        History goes in whole rounds (a reply and every message answering it), so a tool
        message never loses the call it answers; the last round always stays.
        """
        budget = self.config.context_tokens - self.config.reply_tokens - 64
        while estimate_tokens(self.messages) > budget:
            rounds = [i for i in range(2, len(self.messages))
                      if self.messages[i]["role"] == "assistant"]
            if len(rounds) < 2:
                return
            cut = rounds[max(1, len(rounds) // 2)]
            drop = cut - 2
            del self.messages[2:cut]
            self.trimmed += drop
            self.logged = max(0, self.logged - drop)

    def query(self) -> Completion:
        for _attempt in range(3):
            self._fit_context()
            new = self.messages[self.logged :]
            try:
                out = self.llm.chat(self.messages, max_tokens=self.config.reply_tokens,
                                    **self.protocol.request_fields())
            except ContextOverflow as exc:
                self._event("llm_call", step=self.step, messages=new, n_context=len(self.messages),
                            trimmed=self.trimmed, reply=None, usage={}, latency_s=None,
                            error=f"context overflow: {exc}")
                self.logged = len(self.messages)
                self.config.context_tokens = int(self.config.context_tokens * 0.75)
                continue
            except LLMError as exc:
                self._event("llm_call", step=self.step, messages=new, n_context=len(self.messages),
                            trimmed=self.trimmed, reply=None, usage={}, latency_s=None,
                            error=str(exc))
                raise
            self.messages.append(self.protocol.assistant_message(out))
            self._event("llm_call", step=self.step, messages=new, n_context=len(self.messages) - 1,
                        trimmed=self.trimmed, reply=out.text, tool_calls=out.tool_calls,
                        reasoning=out.reasoning, usage=out.usage,
                        latency_s=round(out.latency_s, 4), error=None)
            self.logged = len(self.messages)
            return out
        raise LLMError("the conversation does not fit the LLM's context window")

    def act(self, out: Completion) -> list[dict[str, Any]]:
        """Run the reply's action; the messages that answer it (the observation)."""
        states = self.terminals.states
        not_run = self.prompts.status("not_run")

        def answer(text: str) -> list[dict[str, Any]]:
            return self.protocol.observation(out, text, not_run)

        reply = out.text
        try:
            parsed = self.protocol.parse(out)
        except FormatError as exc:
            self._event("format_error", step=self.step, error=str(exc), reply=reply,
                        tool_calls=out.tool_calls)
            return answer(self.prompts.render("format_error.j2", task=self.task, error=str(exc),
                                              terminals=states(), last_action=None))
        self._event("action", step=self.step, parsed=parsed)
        name, args = parsed["action"], parsed["action_input"]
        last_action = {"action": name, "action_input": args}
        if name == "finish":
            message = str(args.get("message", "")).strip() or "(no message)"
            self._event("finish", step=self.step, message=message)
            raise Submitted(message)
        tid = args.get("terminal_id", "1")
        command, ctype = args.get("command"), None
        try:
            if name == "execute_command_in_terminal":
                ctype = args.get("command_type", "one_time")
                result = self.terminals.execute(tid, command, ctype)
            else:
                result = self.terminals.receive(tid)
        except (KeyError, ValueError, TypeError) as exc:
            self._event("format_error", step=self.step, error=f"bad action_input: {exc}",
                        reply=reply, tool_calls=out.tool_calls)
            return answer(self.prompts.render("format_error.j2", task=self.task,
                                              error=f"bad action_input: {exc}",
                                              terminals=states(), last_action=last_action))
        c = self.config
        status = self.prompts.status(result.status_code, exit_code=result.exit_code,
                                     wait_window_s=int(c.wait_window_s),
                                     command_timeout_s=int(c.command_timeout_s), **result.facts)
        terminals = states()
        self._event("tool_call", step=self.step, tool=name, terminal_id=str(tid),
                    command=command, command_type=ctype, status=status,
                    status_code=result.status_code, exit_code=result.exit_code,
                    stdout=result.stdout, stderr=result.stderr,
                    duration_s=round(result.duration_s, 4),
                    terminals={t: f"Busy: {cmd}" if cmd else "Idle"
                               for t, cmd in terminals.items()})
        return answer(self.prompts.render(
            "observation.j2", task=self.task, action=name, action_input=json.dumps(args),
            last_action=last_action, status=status, exit_code=result.exit_code,
            stdout=result.stdout, stderr=result.stderr, terminals=terminals))
