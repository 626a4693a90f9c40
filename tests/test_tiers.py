"""The tiers (docs/testing.md): a test lands in the tier of what it uses, and one that boots a
sandbox or a real model without saying so fails at once; README's test command is CI's."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import conftest
import pytest
from helpers import CONTROLS, ROOT, run_control

from redline.sandbox import Sandbox, SandboxConfig


def _boots_through_a_helper(tmp_path: Path) -> None:
    run_control(CONTROLS / "replicate-positive.yaml", tmp_path)


def test_what_a_test_reaches_is_read_through_the_helpers_it_calls() -> None:
    names, _ = conftest._reach(_boots_through_a_helper)
    assert "run_trial" in names  # helpers.run_control -> run_trial
    names, strings = conftest._reach(lambda: "smollm2-135m")
    assert "smollm2-135m" in strings


class _Item:
    nodeid = "tests/test_x.py::test_y"

    def __init__(self, *marks: str) -> None:
        self.marks = set(marks)

    def get_closest_marker(self, name: str) -> object | None:
        return name if name in self.marks else None


@pytest.mark.parametrize(("marks", "raises"), [((), True), (("slow",), True),
                                               (("sandbox",), False)])
def test_booting_a_sandbox_without_the_mark_fails_at_once(marks: tuple[str, ...],
                                                          raises: bool,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    booted: list[bool] = []
    monkeypatch.setattr(conftest, "_real_start", lambda self: booted.append(True))
    monkeypatch.setattr(conftest, "_current", [_Item(*marks)])
    sb = Sandbox(SandboxConfig(keep="never"), tmp_path / "sb")
    if raises:
        with pytest.raises(conftest.TierError, match="not marked `sandbox`"):
            sb.start()
        assert booted == []
    else:
        sb.start()  # the stand-in start: nothing boots in the fast tier
        assert booted == [True]


def test_a_real_model_without_the_mark_fails_and_the_scripted_engine_passes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from redline.system import launcher

    started: list[str] = []
    monkeypatch.setattr(conftest, "_real_start_system",
                        lambda folder, script, *a, **kw: started.append(script))
    monkeypatch.setattr(conftest, "_current", [_Item("sandbox")])
    with pytest.raises(conftest.TierError, match="not marked `llm`"):
        launcher.start_system("/f", "deploy_api_server_scripts/deploy_api_server_smollm2.py")
    launcher.start_system("/f", "deploy_api_server_scripts/deploy_api_server_scripted.py")
    assert started == ["deploy_api_server_scripts/deploy_api_server_scripted.py"]


COLLECT = """
import json, sys, pytest
class Dump:
    def pytest_collection_finish(self, session):
        print("MARKS " + json.dumps({i.nodeid: sorted({m.name for m in i.iter_markers()})
                                     for i in session.items}))
pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", sys.argv[1]], plugins=[Dump()])
"""


def _every_tests_marks() -> dict[str, list[str]]:
    """The marks of every test in the tree: this run's own collection where it took the whole
    tree (README's tiers do: `-m` deselects after the marks are set), else a collection of it."""
    everything = {str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")}
    if everything <= {n.split("::")[0] for n in conftest.COLLECTED}:
        return dict(conftest.COLLECTED)
    out = subprocess.run([sys.executable, "-c", COLLECT, str(ROOT / "tests")], capture_output=True,
                         text=True, cwd=ROOT, timeout=120).stdout
    return json.loads(next(x for x in out.splitlines() if x.startswith("MARKS "))[6:])


def test_every_test_is_in_exactly_one_of_fast_and_the_heavier_tiers() -> None:
    marks = _every_tests_marks()
    assert len(marks) > 500
    for nodeid, found in marks.items():
        tiers = set(found) & set(conftest.TIERS)
        assert ("fast" in found) != bool(tiers), (nodeid, found)
    controls = [n for n in marks if "test_controls.py::test_control_gives" in n]
    assert controls and all({"controls", "sandbox"} <= set(marks[n]) for n in controls)
    docker = [n for n in marks if n.startswith("tests/test_sandbox_conformance.py") and
              "[docker" in n]  # on the engine the run starts once
    assert docker and all("serial" in marks[n] for n in docker)


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^    (bash scripts/install\.sh.*)$", readme, flags=re.M)[:2]
    assert len(commands) == 2 and "--test" in commands[1]
    assert commands[1] in (ROOT / ".ci" / "run").read_text()
    assert "scripts/test.sh" in commands[1]


class _Unit:
    def __init__(self, nodeid: str, group: str | None = None) -> None:
        self.nodeid, self.group = nodeid, group

    def get_closest_marker(self, name: str) -> object:
        return pytest.mark.xdist_group(self.group).mark if name == "xdist_group" and \
            self.group else None


def test_under_xdist_the_longest_units_go_first_and_a_group_stays_together() -> None:
    items = [_Unit("a"), _Unit("g1", "grp"), _Unit("b"), _Unit("g2", "grp"), _Unit("new")]
    known = {"a": 1.0, "g1": 50.0, "b": 90.0, "g2": 60.0}
    got = [i.nodeid for i in conftest.longest_first(items, known)]  # type: ignore[arg-type]
    # the group (110 s) before b (90 s); 'new' counts as the median (60 s); a last
    assert got == ["g1", "g2", "b", "new", "a"]
    same = [i.nodeid for i in conftest.longest_first(items, {})]  # type: ignore[arg-type]
    assert same == ["a", "g1", "g2", "b", "new"]  # nothing known: collection order, groups whole


def test_xdist_loadgroup_can_mark_a_group_with_this_pytest(request: pytest.FixtureRequest) -> None:
    """pytest-xdist's `--dist loadgroup` puts a group on one worker by appending "@group" to
    each test's `_nodeid`; a pytest whose `nodeid` does not read it (pytest 9) ignores every
    group without a word, and module fixtures run once per worker (pyproject pins pytest)."""
    item = request.node
    plain = item.nodeid
    item._nodeid = plain + "@probe"  # what xdist's worker does
    try:
        assert item.nodeid == plain + "@probe"
    finally:
        item._nodeid = plain
