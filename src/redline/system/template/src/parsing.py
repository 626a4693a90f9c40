"""Parse the five-part thinking-model reply: Explain, Gaps, Findings, Plan, Action (JSON).

The thinking sections are read the same way under every protocol; where the action comes from
(a JSON block in the text, or a native tool call) is the protocol's business (protocols.py).
"""

from __future__ import annotations

import json
import re
from typing import Any

from .tools import Tool, ToolError, check_call, registry

SECTIONS = ("explain", "gaps", "findings", "plan", "action")
THINKING = SECTIONS[:4]
_HEADER = re.compile(
    r"^[\s>#*_-]*(explain|gaps|findings|plan|action)[*_\s]*:?[*_]*\s*:?", re.I | re.M
)


class FormatError(Exception):
    """The reply does not hold a usable action; the agent tells the model and continues."""


def _json_objects(text: str) -> list[str]:
    """Balanced {...} spans, in order; strings are respected so braces inside them don't count."""
    spans, depth, start, in_str, esc = [], 0, -1, False, False
    for i, ch in enumerate(text):
        if in_str:
            esc = (ch == "\\") and not esc
            if ch == '"' and not esc:
                in_str = False
            elif ch != "\\":
                esc = False
            continue
        if ch == '"' and depth:
            in_str = True
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                spans.append(text[start : i + 1])
    return spans


def sections(text: str) -> dict[str, str]:
    """Each section's text by its lower-case name; the first header of a name wins."""
    parts: dict[str, str] = {}
    marks = [(m.start(), m.end(), m.group(1).lower()) for m in _HEADER.finditer(text or "")]
    for k, (_s, e, name) in enumerate(marks):
        end = marks[k + 1][0] if k + 1 < len(marks) else len(text)
        parts.setdefault(name, text[e:end].strip())
    return parts


def parsed_action(parts: dict[str, str], tool: Tool, action_input: dict[str, Any]
                  ) -> dict[str, Any]:
    """The `action` trace record: the thinking sections (missing ones empty) and the action."""
    return {**{name: parts.get(name, "") for name in THINKING},
            "action": tool.name, "action_input": action_input}


def parse_reply(text: str, tools: tuple[Tool, ...] | None = None) -> dict[str, Any]:
    if not text or not text.strip():
        raise FormatError("The reply was empty.")
    parts = sections(text)
    action_text = parts.get("action", "")
    candidates = _json_objects(action_text) + _json_objects(text)
    action = None
    for raw in reversed(candidates):
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and "action" in obj:
            action = obj
            break
    if action is None:
        raise FormatError(
            'No Action JSON block found. End your reply with Action: {"action": ..., '
            '"action_input": {...}}.'
        )
    try:
        tool, action_input = check_call(tools or registry(), str(action.get("action", "")),
                                        action.get("action_input") or {})
    except ToolError as exc:
        raise FormatError(str(exc)) from exc
    return parsed_action(parts, tool, action_input)
