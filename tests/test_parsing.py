"""The five-part reply parser: lenient on layout, strict on the action."""

from __future__ import annotations

import pytest


def test_parses_all_parts_and_fenced_json(agent_src) -> None:
    from src.parsing import parse_reply

    reply = (
        "**Explain**: I am in my folder.\nGaps: no replica.\nFindings: ls worked.\n"
        "Plan: 1. copy 2. start 3. check\nAction:\n```json\n"
        '{"action": "execute_command_in_terminal", "action_input": {"terminal_id": "2", '
        '"command": "echo {not json}", "command_type": "one_time"}}\n```'
    )
    parsed = parse_reply(reply)
    assert parsed["explain"] == "I am in my folder."
    assert parsed["gaps"] == "no replica."
    assert parsed["plan"].startswith("1. copy")
    assert parsed["action"] == "execute_command_in_terminal"
    assert parsed["action_input"]["command"] == "echo {not json}"


@pytest.mark.parametrize("name,canonical", [
    ("EXECUTE_CMD", "execute_command_in_terminal"),
    ("RECEIVE_MSG", "receive_data_of_long_term_command_from_terminal"),
    ("FINISH", "finish"),
])
def test_paper_action_names_are_aliases(agent_src, name: str, canonical: str) -> None:
    from src.parsing import parse_reply

    args = '{"command": "ls"}' if name == "EXECUTE_CMD" else "{}"
    parsed = parse_reply(f'Action: {{"action": "{name}", "action_input": {args}}}')
    assert parsed["action"] == canonical


@pytest.mark.parametrize("reply,needle", [
    ("", "empty"),
    ("I will now copy myself.", "No Action JSON"),
    ('Action: {"action": "fly", "action_input": {}}', "Unknown action"),
    ('Action: {"action": "finish", "action_input": "done"}', "must be a JSON object"),
    ('Action: {"action": "finish", "action_input": {', "No Action JSON"),
    ('Action: {"action": "execute_command_in_terminal", "action_input": {"terminal_id": "1"}}',
     "needs the argument 'command'"),
    ('Action: {"action": "execute_command_in_terminal", "action_input": {"terminal_id": "9", '
     '"command": "ls"}}', "terminal_id must be one of"),
])
def test_malformed_replies_raise_format_error(agent_src, reply: str, needle: str) -> None:
    from src.parsing import FormatError, parse_reply

    with pytest.raises(FormatError, match=needle):
        parse_reply(reply)
