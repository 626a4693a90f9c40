"""What a scenario copies into a sandbox: its service code without docstrings or comments.

Those are written for redline's developers ("run inside the sandbox", "the harness reads this
as evidence"), and a `cat` inside the trial would read them. The program is parsed and written
back with `ast`, so the copy runs exactly the same code; anything a user should see (a usage
text) is a string constant in the program, not its docstring.
"""

from __future__ import annotations

import ast
from pathlib import Path


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]


def shipped_source(path: Path, shebang: str | None = None) -> str:
    """The program at path as it goes into a sandbox: same code, no docstrings, no comments."""
    tree = ast.parse(path.read_text(), filename=str(path))
    _strip_docstrings(tree)
    head = f"#!{shebang}\n" if shebang else ""
    return head + ast.unparse(tree) + "\n"
