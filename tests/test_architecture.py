"""The package graph and the shared contracts: layers without cycles (import-linter, with the
contracts in pyproject.toml), one registry pattern, and the sandbox contract every backend
keeps. docs/ARCHITECTURE.md draws the graph these tests hold the code to."""

from __future__ import annotations

import ast
import inspect
import os
import re
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from redline.contracts.registry import Registry, UnknownName
from redline.contracts.sandbox import Sandbox
from redline.experiment.config import Experiment
from redline.experiment.runner import BACKENDS as EXPERIMENT_BACKENDS
from redline.sandbox import BACKENDS as SANDBOX_BACKENDS
from redline.sandbox.config import SandboxConfig
from redline.scenarios import SCENARIOS, Scenario
from redline.system.engines import KINDS, EngineError, parse_model

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "redline"
LINT = Path(sys.executable).with_name("lint-imports")


def lint(src_root: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports over the package found under src_root, with the contracts of
    pyproject.toml."""
    env = {**os.environ, "PYTHONPATH": str(src_root)}
    return subprocess.run([str(LINT), str(ROOT / "pyproject.toml")], capture_output=True,
                          text=True, timeout=300, env=env, cwd=ROOT)


def test_the_package_graph_keeps_its_layers_and_has_no_cycle() -> None:
    assert LINT.exists(), "import-linter is part of the test extra: pip install -e '.[test]'"
    res = lint(ROOT / "src")
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "3 kept, 0 broken" in res.stdout


@pytest.mark.parametrize(("module", "line", "broken"), [
    ("contracts/verdict.py", "import redline.trial.run", "The leaf"),
    ("judge/identity.py", "import redline.scenarios.base", "Layers"),
    ("experiment/summary.py", "import redline.analysis.stats", "Layers"),
])
def test_an_upward_import_breaks_the_check(tmp_path: Path, module: str, line: str,
                                           broken: str) -> None:
    """The check can fail: the same contracts over a copy with one import that goes up."""
    copy = tmp_path / "src" / "redline"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("__pycache__", "template"))
    target = copy / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    res = lint(tmp_path / "src")
    assert res.returncode != 0, res.stdout[-2000:]
    assert f"{broken}" in res.stdout and "BROKEN" in res.stdout


def test_no_import_of_redline_inside_a_function_below_the_cli() -> None:
    """A function-level import is how a cycle hides; only the CLI layer (each area's cli.py
    and redline/cli.py) defers imports, for the start-up time of `redline --help`."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.name == "cli.py" or rel.parts[0] == "system" and rel.parts[1:2] in (
                ("template",), ("deploy",)):  # the agent's own code never imports redline
            continue
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                names = ([node.module or ""] if isinstance(node, ast.ImportFrom) else
                         [a.name for a in node.names] if isinstance(node, ast.Import) else [])
                found += [f"{rel}:{node.lineno} {n}" for n in names if n.startswith("redline")]
    assert found == []


# ---------------------------------------------------------------- one registry pattern


class _A:
    name = "a"


class _B(_A):
    pass


def test_a_registry_rejects_duplicates_inherited_names_and_says_what_exists() -> None:
    with pytest.raises(ValueError, match="two things are named 'x'"):
        Registry("thing", [("x", 1), ("x", 2)])
    with pytest.raises(ValueError, match="_B declares no `name` of its own"):
        Registry.of_classes("thing", [_A, _B])
    reg = Registry("thing", [("x", 1), ("y", 2)])
    with pytest.raises(UnknownName, match="unknown thing 'z'; choose from x, y"):
        reg.get("z")
    assert reg.get("y") == 2 and list(reg) == ["x", "y"] and "x" in reg and "z" not in reg
    with pytest.raises(ValueError, match="named 'x'"):
        reg.extended([("x", 3)])
    assert reg.extended([("z", 3)]).get("z") == 3 and "z" not in reg


def test_every_registry_names_what_its_setting_accepts() -> None:
    """The names a setting takes (a Literal) and the registry behind it are one list."""
    assert SANDBOX_BACKENDS.names() == list(typing.get_args(
        SandboxConfig.model_fields["backend"].annotation))
    assert EXPERIMENT_BACKENDS.names() == list(typing.get_args(
        Experiment.model_fields["backend"].annotation))
    assert KINDS.names() == ["gguf", "vllm", "scripted"]
    with pytest.raises(EngineError, match="use gguf:, vllm:, scripted:"):
        parse_model("onnx:/x")
    for name, cls in SCENARIOS.items():
        assert issubclass(cls, Scenario) and cls.__dict__["name"] == name


# ---------------------------------------------------------------- the sandbox contract


@pytest.mark.parametrize("name", SANDBOX_BACKENDS.names())
def test_every_sandbox_backend_keeps_the_contract(name: str) -> None:
    """Each backend has every member of the Protocol, with the Protocol's signature."""
    backend = SANDBOX_BACKENDS.get(name)
    assert isinstance(backend(SandboxConfig()), Sandbox)  # not started: nothing runs
    members = [m for m, v in vars(Sandbox).items() if callable(v) and (
        not m.startswith("_") or m in ("__enter__", "__exit__"))]
    assert {"spawn", "exec", "processes", "listening_ports", "teardown"} <= set(members)
    for member in members:
        want = inspect.signature(getattr(Sandbox, member))
        got = inspect.signature(getattr(backend, member))
        assert list(got.parameters) == list(want.parameters), (name, member)


ENGINE_WORDS = re.compile(r"vllm|llama|scripted|xllamacpp", re.I)
# The engine table, the deploy scripts' templates, and the AI system's own program (which
# must know how to talk to its server) may name an engine; nothing else of the harness does.
ENGINE_PLACES = ("system/engines.py", "system/deploy/", "system/template/")


def test_no_engine_is_named_outside_the_engine_table() -> None:
    src = ROOT / "src" / "redline"
    named = [f"{p.relative_to(src)}:{i}: {line.strip()}"
             for p in sorted(src.rglob("*.py"))
             if not str(p.relative_to(src)).startswith(ENGINE_PLACES)
             for i, line in enumerate(p.read_text().splitlines(), 1) if ENGINE_WORDS.search(line)]
    assert not named, "\n".join(named)
