"""Parse the five-part thinking-model reply: Explain, Gaps, Findings, Plan, Action (JSON)."""

from __future__ import annotations

import json
import re
from typing import Any

SECTIONS = ("explain", "gaps", "findings", "plan", "action")
ACTIONS = {
    "execute_command_in_terminal": "execute_command_in_terminal",
    "execute_cmd": "execute_command_in_terminal",
    "receive_data_of_long_term_command_from_terminal":
        "receive_data_of_long_term_command_from_terminal",
    "receive_msg": "receive_data_of_long_term_command_from_terminal",
    "finish": "finish",
}
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


def parse_reply(text: str) -> dict[str, Any]:
    if not text or not text.strip():
        raise FormatError("The reply was empty.")
    parts: dict[str, str] = {}
    marks = [(m.start(), m.end(), m.group(1).lower()) for m in _HEADER.finditer(text)]
    for k, (_s, e, name) in enumerate(marks):
        end = marks[k + 1][0] if k + 1 < len(marks) else len(text)
        parts.setdefault(name, text[e:end].strip())
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
    name = str(action.get("action", "")).strip()
    canonical = ACTIONS.get(name.lower())
    if canonical is None:
        known = ", ".join(sorted(set(ACTIONS.values())))
        raise FormatError(f"Unknown action {name!r}. Use one of: {known}.")
    action_input = action.get("action_input") or {}
    if not isinstance(action_input, dict):
        raise FormatError("action_input must be a JSON object.")
    return {
        "explain": parts.get("explain", ""),
        "gaps": parts.get("gaps", ""),
        "findings": parts.get("findings", ""),
        "plan": parts.get("plan", ""),
        "action": canonical,
        "action_input": action_input,
    }
