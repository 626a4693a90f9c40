"""How the agent and its LLM exchange actions: one small class per protocol.

- `text`: the reply is free text with five sections; the action is the JSON block
  after "Action:". Observations go back as user messages.
- `native`: the OpenAI tool-calling API, as current open models are trained for. The tools go
  out as function schemas; the reply's first tool call is the action and its content holds the
  thinking sections. Every call is answered by a `tool` message: the first with the
  observation, any others with a note that only one action runs per round.
- `constrained`: `text`, enforced by the server with a grammar made from the same tool
  definitions (llama.cpp `grammar`, vLLM `structured_outputs`): a model cannot make a format
  error under it.
"""

from __future__ import annotations

import json
from typing import Any

from .llm import Completion
from .parsing import FormatError, parse_reply, parsed_action, sections
from .tools import Tool, ToolError, ToolTexts, check_call, function_schemas, gbnf

PROTOCOLS = ("text", "native", "constrained")


class TextProtocol:
    name = "text"

    def __init__(self, tools: tuple[Tool, ...], texts: ToolTexts) -> None:
        self.tools, self.texts = tools, texts

    def request_fields(self) -> dict[str, Any]:
        """What this protocol adds to every chat request."""
        return {}

    def assistant_message(self, out: Completion) -> dict[str, Any]:
        return {"role": "assistant", "content": out.text}

    def parse(self, out: Completion) -> dict[str, Any]:
        return parse_reply(out.text, self.tools)

    def observation(self, out: Completion, text: str, not_run: str) -> list[dict[str, Any]]:
        """The messages that answer this reply."""
        return [{"role": "user", "content": text}]


class ConstrainedProtocol(TextProtocol):
    name = "constrained"

    def __init__(self, tools: tuple[Tool, ...], texts: ToolTexts, engine: str,
                 section_chars: int) -> None:
        super().__init__(tools, texts)
        self.grammar = gbnf(tools, section_chars)
        self.engine = engine

    def request_fields(self) -> dict[str, Any]:
        if self.engine == "vllm":
            return {"structured_outputs": {"grammar": self.grammar}}
        return {"grammar": self.grammar}  # llama.cpp's server, and the scripted stand-in


class NativeProtocol(TextProtocol):
    name = "native"

    def __init__(self, tools: tuple[Tool, ...], texts: ToolTexts, tool_choice: str) -> None:
        super().__init__(tools, texts)
        self.schemas = function_schemas(tools, texts)
        self.tool_choice = tool_choice

    def request_fields(self) -> dict[str, Any]:
        return {"tools": self.schemas, "tool_choice": self.tool_choice}

    def assistant_message(self, out: Completion) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": out.text}
        if out.tool_calls:
            message["tool_calls"] = out.tool_calls
        return message

    def parse(self, out: Completion) -> dict[str, Any]:
        if not out.tool_calls:
            names = ", ".join(t.name for t in self.tools)
            raise FormatError(f"No tool call found. Call exactly one of the tools: {names}.")
        function = out.tool_calls[0]["function"]
        raw = function.get("arguments")
        if isinstance(raw, str):
            try:
                args = json.loads(raw) if raw.strip() else {}
            except json.JSONDecodeError as exc:
                raise FormatError(f"The arguments of {function.get('name')!r} are not valid "
                                  f"JSON: {exc}.") from exc
        else:
            args = raw if raw is not None else {}
        try:
            tool, action_input = check_call(self.tools, str(function.get("name") or ""), args)
        except ToolError as exc:
            raise FormatError(str(exc)) from exc
        return parsed_action(sections(out.text), tool, action_input)

    def observation(self, out: Completion, text: str, not_run: str) -> list[dict[str, Any]]:
        if not out.tool_calls:
            return [{"role": "user", "content": text}]
        first, *rest = out.tool_calls
        return [{"role": "tool", "tool_call_id": first["id"], "content": text},
                *({"role": "tool", "tool_call_id": c["id"], "content": not_run} for c in rest)]


Protocol = TextProtocol  # the contract every protocol class keeps


def make_protocol(name: str, tools: tuple[Tool, ...], texts: ToolTexts, *, engine: str,
                  tool_choice: str = "auto", section_chars: int = 160) -> Protocol:
    if name == "text":
        return TextProtocol(tools, texts)
    if name == "native":
        return NativeProtocol(tools, texts, tool_choice)
    if name == "constrained":
        return ConstrainedProtocol(tools, texts, engine, section_chars)
    raise ValueError(f"unknown protocol {name!r}: choose from {', '.join(PROTOCOLS)}")
