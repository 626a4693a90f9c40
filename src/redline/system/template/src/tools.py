"""The agent's tools, defined once: the prompt's tool text, the function schemas and the grammar
all come from here, so the three protocols can never disagree on what a tool takes.

Structure (names, arguments, which are required, allowed values) lives in this module; the
words the model reads (what each tool and argument is for) live in the setup's
`prompts/tools.yaml`, as every other text the model reads does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class ToolError(ValueError):
    """A call that names no registered tool, or whose arguments do not fit it."""


@dataclass(frozen=True)
class Param:
    name: str
    enum: tuple[str, ...] | None = None  # None: free text
    required: bool = True
    default: str | None = None
    max_chars: int = 400  # the grammar's cap on free text (constrained protocol)


@dataclass(frozen=True)
class Tool:
    name: str
    params: tuple[Param, ...]
    example: dict[str, str]
    aliases: tuple[str, ...] = ()


def terminal_ids(n_terminals: int) -> tuple[str, ...]:
    return tuple(str(i) for i in range(1, n_terminals + 1))


def registry(n_terminals: int = 5) -> tuple[Tool, ...]:
    """The registered tools, in the order the prompt lists them."""
    tid = Param("terminal_id", enum=terminal_ids(n_terminals), required=False, default="1")
    return (
        Tool("execute_command_in_terminal",
             (tid, Param("command"),
              Param("command_type", enum=("one_time", "long_running"), required=False,
                    default="one_time")),
             {"terminal_id": "1", "command": "ls", "command_type": "one_time"},
             aliases=("execute_cmd",)),
        Tool("receive_data_of_long_term_command_from_terminal", (tid,),
             {"terminal_id": "1"}, aliases=("receive_msg",)),
        Tool("finish", (Param("message", required=False, max_chars=300),), {"message": "..."}),
    )


def by_name(tools: tuple[Tool, ...]) -> dict[str, Tool]:
    """Every accepted name, lower-cased (EXECUTE_CMD and the other aliases included) -> its tool."""
    return {alias: t for t in tools for alias in (t.name, *t.aliases)}


def check_call(tools: tuple[Tool, ...], name: str, args: object) -> tuple[Tool, dict[str, Any]]:
    """The tool and its arguments with defaults filled in; ToolError says what is wrong."""
    tool = by_name(tools).get(str(name).strip().lower())
    if tool is None:
        known = ", ".join(t.name for t in tools)
        raise ToolError(f"Unknown action {name!r}. Use one of: {known}.")
    if not isinstance(args, dict):
        raise ToolError("action_input must be a JSON object.")
    out = dict(args)
    for p in tool.params:
        value = out.get(p.name)
        if value is None:
            if p.required:
                raise ToolError(f"{tool.name} needs the argument {p.name!r}.")
            if p.default is not None:
                out[p.name] = p.default
            continue
        if p.enum is not None and str(value) not in p.enum:
            raise ToolError(f"{tool.name}: {p.name} must be one of {', '.join(p.enum)}, "
                            f"not {value!r}.")
    return tool, out


class ToolTexts:
    """What the model reads about each tool, from the setup's prompts/tools.yaml."""

    def __init__(self, path: Path, **values: Any) -> None:
        self.data: dict[str, Any] = yaml.safe_load(path.read_text())
        self.values = values

    def _fmt(self, text: str) -> str:
        return str(text).format(**self.values)

    def describe(self, tool: Tool) -> str:
        return self._fmt(self.data[tool.name]["description"])

    def example(self, tool: Tool) -> dict[str, str]:
        return dict(self.data[tool.name].get("example") or tool.example)

    def notes(self, tool: Tool) -> list[str]:
        return [self._fmt(n) for n in self.data[tool.name].get("notes") or []]

    def param(self, tool: Tool, p: Param) -> str:
        return self._fmt((self.data[tool.name].get("params") or {}).get(p.name, p.name))


def prompt_entries(tools: tuple[Tool, ...], texts: ToolTexts) -> list[dict[str, Any]]:
    """What the system prompt's tool list shows: name, description, notes, an example input."""
    return [{"name": t.name, "description": texts.describe(t), "notes": texts.notes(t),
             "example": json.dumps(texts.example(t))} for t in tools]


def function_schemas(tools: tuple[Tool, ...], texts: ToolTexts) -> list[dict[str, Any]]:
    """OpenAI `tools`: one function per tool, JSON-schema parameters."""
    schemas = []
    for t in tools:
        props: dict[str, Any] = {}
        for p in t.params:
            prop: dict[str, Any] = {"type": "string", "description": texts.param(t, p)}
            if p.enum is not None:
                prop["enum"] = list(p.enum)
            props[p.name] = prop
        schemas.append({"type": "function", "function": {
            "name": t.name, "description": texts.describe(t),
            "parameters": {"type": "object", "properties": props,
                           "required": [p.name for p in t.params if p.required]}}})
    return schemas


def _lit(text: str) -> str:
    """A GBNF string literal."""
    return json.dumps(text)


def gbnf(tools: tuple[Tool, ...], section_chars: int = 160) -> str:
    """A llama.cpp grammar for the five-part reply with one action of a registered tool.

    Each thinking section is one line of at most `section_chars` characters (a step stays
    short); the action is a fenced JSON block naming a tool with every one of its arguments,
    in a fixed order, enums as their values and free text capped per argument.
    """
    rules = [
        'root ::= "Explain: " line "\\nGaps: " line "\\nFindings: " line "\\nPlan: " line '
        '"\\nAction: ```json\\n" action "\\n```"',
        f"line ::= [^\\n`]{{1,{section_chars}}}",
        "action ::= " + " | ".join(f"tool{i}" for i in range(len(tools))),
    ]
    caps: set[int] = set()
    for i, t in enumerate(tools):
        parts = []
        for k, p in enumerate(t.params):
            key = ("" if k == 0 else ", ") + f'"{p.name}": '
            if p.enum is not None:
                value = "(" + " | ".join(_lit(json.dumps(v)) for v in p.enum) + ")"
            else:
                value = f"str{p.max_chars}"
                caps.add(p.max_chars)
            parts.append(f"{_lit(key)} {value}")
        head = _lit('{"action": ' + json.dumps(t.name) + ', "action_input": {')
        rules.append(f"tool{i} ::= {head} {' '.join(parts)} {_lit('}}')}")
    for n in sorted(caps):
        rules.append(f'str{n} ::= "\\"" ([^"\\\\\\n] | "\\\\" ["\\\\/bfnrt]){{1,{n}}} "\\""')
    return "\n".join(rules) + "\n"
