"""Fixtures, and the tiers every test lands in (docs/testing.md).

A test's tier follows from what it uses, never from a list kept by hand:
- `sandbox`: it boots a sandbox (a trial, `make_sandbox`, a control); `llm`: it starts an LLM
  server on real weights. Both are found in the test's own code, its fixtures' and the test
  helpers they call (`_reach`), and enforced while it runs: booting a sandbox or a real model
  from a test without the mark raises `TierError`, so a new test cannot land in the wrong tier.
- `controls` (the control matrix), `slow` (Ray, experiments, the Docker daemon) and `serial`
  (needs the machine to itself) are written on the test.
- `fast`: none of these; `pytest -m fast` is the tier a developer runs while working.

Under pytest-xdist, tests that share a module- or session-scoped fixture of their own go to
one worker (`xdist_group`), so no such fixture runs once per worker.
"""

from __future__ import annotations

import glob
import inspect
import json
import os
import re
import signal
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from dockerd import dockerd  # noqa: F401 - the Docker engine fixture, one per run
from helpers import TEMPLATE

from redline.sandbox.base import SandboxBase
from redline.sandbox.hostroot import NEUTRAL_ROOT
from redline.scenarios.remote import host_links
from redline.system import launcher

TESTS = Path(__file__).resolve().parent
TIERS = ("sandbox", "controls", "llm", "slow", "serial")
# Calls that boot a sandbox, and what names a real model, as a test's code spells them.
SANDBOX_CALLS = frozenset({"run_trial", "make_sandbox", "Sandbox", "BwrapSandbox",
                           "DockerSandbox", "start_inside", "run_experiment", "run_control"})
# ... or code a test hands to a subprocess (a harness it kills, `redline run` as a user types it)
SANDBOX_STRINGS = ("Sandbox(", "make_sandbox(", "run_trial(", "redline.cli")
LLM_NAMES = frozenset({"smollm2_gguf", "DEFAULT_MODEL"})
LLM_STRINGS = ("smollm2-135m", "gemma", "SmolLM2")
SCRIPTED_DEPLOY = "deploy_api_server_scripted.py"
STORE = re.compile(r"[0-9a-f]{10}")  # a sandbox's store: its id
# Fixtures that start a daemon of the run's own, once: their tests run alone, after the rest.
DAEMON_FIXTURES = frozenset({"dockerd"})
# A headless browser (Chromium through WebDriver) or Inspect's own viewer: a few seconds of
# another program's start each, not the logic the fast tier is for (`slow`, parallel tier).
BROWSER_CALLS = frozenset({"headless_chromium"})


class TierError(RuntimeError):
    """A test did what its tier does not allow (docs/testing.md)."""


# ----- what a test reaches -------------------------------------------------------------------
def _own(obj: object) -> bool:
    """Defined in the test tree (a test module, helpers, fixtures): followed into."""
    mod = sys.modules.get(getattr(obj, "__module__", "") or "")
    path = getattr(mod, "__file__", None)
    return bool(path) and Path(path).resolve().is_relative_to(TESTS)


def _reach(obj: object, seen: set[int] | None = None) -> tuple[set[str], set[str]]:
    """(names, strings) a function's code uses, following the test tree's own functions and
    classes it names, and nested code (lambdas, inner functions)."""
    seen = set() if seen is None else seen
    names: set[str] = set()
    strings: set[str] = set()
    if id(obj) in seen:
        return names, strings
    seen.add(id(obj))
    if inspect.isclass(obj):
        for member in vars(obj).values():
            if inspect.isfunction(member):
                n, s = _reach(member, seen)
                names |= n
                strings |= s
        return names, strings
    func = inspect.unwrap(obj) if callable(obj) else obj
    code = getattr(func, "__code__", None)
    if code is None:
        return names, strings
    glb = getattr(func, "__globals__", {})
    stack = [code]
    while stack:
        c = stack.pop()
        names.update(c.co_names)
        for const in c.co_consts:
            if isinstance(const, types.CodeType):
                stack.append(const)
            elif isinstance(const, str):
                strings.add(const)
        for name in c.co_names:
            target = glb.get(name)
            if isinstance(target, str):  # a module's text: code it hands to a subprocess
                strings.add(target)
                continue
            if target is not None and (inspect.isfunction(target) or inspect.isclass(target)) \
                    and _own(target):
                n, s = _reach(target, seen)
                names |= n
                strings |= s
    return names, strings


def _uses(item: pytest.Item) -> tuple[set[str], set[str]]:
    names: set[str] = set()
    strings: set[str] = set()
    seen: set[int] = set()
    funcs = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    for defs in (info.name2fixturedefs.values() if info else []):
        funcs += [d.func for d in defs if _own(d.func)]
    for func in funcs:
        if func is not None:
            n, s = _reach(func, seen)
            names |= n
            strings |= s
    return names, strings


def _shared_fixture(item: pytest.Item) -> str | None:
    """The test tree's own module- or session-scoped fixture this test uses, if any."""
    info = getattr(item, "_fixtureinfo", None)
    for name in (info.names_closure if info else []):
        for d in info.name2fixturedefs.get(name, ()):
            if d.scope in ("module", "session") and _own(d.func):
                return f"{d.baseid or 'session'}::{name}"
    return None


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups (and `-m` deselects)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names, strings = _uses(item)
        if names & SANDBOX_CALLS or any(w in s for s in strings for w in SANDBOX_STRINGS):
            item.add_marker("sandbox")
        if names & LLM_NAMES or any(w in s for s in strings for w in LLM_STRINGS):
            item.add_marker("llm")
        if names & BROWSER_CALLS:
            item.add_marker("slow")
        if DAEMON_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker("slow")
            item.add_marker("serial")
        if not any(item.get_closest_marker(t) for t in TIERS):
            item.add_marker("fast")
        group = _shared_fixture(item)
        if group and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(group))
    # every test this run collected, before `-m` deselects any: test_tiers reads it
    COLLECTED.clear()
    COLLECTED.update({i.nodeid: sorted({m.name for m in i.iter_markers()}) for i in items})
    if _under_xdist(config):
        items[:] = longest_first(items, _known_durations())


# ----- the longest first, under xdist ---------------------------------------------------------
# The parallel tier's workers take its tests in collection order; a long test taken last keeps
# the tier waiting on one worker while the others idle (a 5-minute tail was measured). So under
# xdist the tests go longest first, by their durations in the last recorded run
# (tests/durations.json; `REDLINE_TEST_DURATIONS=tests/durations.json bash scripts/test.sh`
# records them). A group that shares a fixture (one xdist unit) counts as its total and stays
# together, in its own order. Every worker sorts alike: the file is the same for all.
DURATIONS = Path(__file__).with_name("durations.json")


def _under_xdist(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput") or bool(getattr(config.option, "numprocesses", None))


def _known_durations() -> dict[str, float]:
    try:
        return {str(k): float(v) for k, v in json.loads(DURATIONS.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def longest_first(items: list[pytest.Item], known: dict[str, float]) -> list[pytest.Item]:
    """Items reordered: units (a test, or an xdist group's tests together) by their known
    total duration, longest first; a test never timed counts as the median of those timed."""
    times = sorted(known.values())
    default = times[len(times) // 2] if times else 0.0

    def unit(item: pytest.Item) -> str:
        mark = item.get_closest_marker("xdist_group")
        return f"group:{mark.args[0] if mark.args else mark.kwargs.get('name')}" if mark \
            else item.nodeid

    total: dict[str, float] = {}
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        u = unit(item)
        total[u] = total.get(u, 0.0) + known.get(item.nodeid, default)
        first.setdefault(u, i)
    order = {id(item): i for i, item in enumerate(items)}
    return sorted(items, key=lambda it: (-total[unit(it)], first[unit(it)], order[id(it)]))


_TIMED: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _TIMED[report.nodeid] = _TIMED.get(report.nodeid, 0.0) + report.duration


COLLECTED: dict[str, list[str]] = {}


# ----- enforced while a test runs ----------------------------------------------------------
_current: list[pytest.Item] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    _current.append(item)
    try:
        return (yield)
    finally:
        _current.pop()


def _require(marker: str, what: str) -> None:
    if _current and not _current[-1].get_closest_marker(marker):
        raise TierError(f"{_current[-1].nodeid} {what} but is not marked `{marker}`: add "
                        f"@pytest.mark.{marker} (docs/testing.md, tiers)")


_real_start = SandboxBase.start
_real_start_system = launcher.start_system


def _guarded_start(self: SandboxBase) -> None:
    _require("sandbox", "boots a sandbox")
    _real_start(self)


def _guarded_start_system(folder: str, deploy_script: str, *args: object,
                          **kw: object) -> launcher.RunningSystem:
    if not deploy_script.endswith(SCRIPTED_DEPLOY):
        _require("llm", f"starts an LLM server on real weights ({deploy_script})")
    return _real_start_system(folder, deploy_script, *args, **kw)


SandboxBase.start = _guarded_start  # type: ignore[method-assign]
for _mod in list(sys.modules.values()):  # every module that took start_system by name
    if getattr(_mod, "__name__", "").startswith("redline") and \
            getattr(_mod, "start_system", None) is _real_start_system:
        _mod.start_system = _guarded_start_system  # type: ignore[attr-defined]


# ----- nothing left behind ------------------------------------------------------------------
def leftovers() -> set[str]:
    """What sandboxes leave on the host if their teardown fails: cgroups (in every hierarchy,
    with or without processes in them), stores of home and /tmp, mounts of those stores,
    veths in the host's namespace (the remote scenario's)."""
    found = set()
    for cg in glob.glob("/sys/fs/cgroup/*/redline/sb-*") + glob.glob(
            "/sys/fs/cgroup/redline/sb-*"):
        try:
            procs = Path(cg, "cgroup.procs").read_text().split()
        except OSError:
            procs = []
        found.add(f"cgroup {cg}" + (f" with processes {procs}" if procs else ""))
    if NEUTRAL_ROOT.is_dir():
        found |= {f"store {p}" for p in NEUTRAL_ROOT.iterdir() if STORE.fullmatch(p.name)}
    try:
        with open("/proc/self/mountinfo") as fh:
            found |= {f"mount {line.split()[4]}" for line in fh
                      if str(NEUTRAL_ROOT) + "/" in line.split()[3] or "/.userdata/" in
                      line.split()[3]}
    except OSError:
        pass
    found |= {f"veth {name}" for name in host_links()}
    if _BASETEMP:  # a small disk (a tmpfs) or any other mount under this run's own folders
        with open("/proc/self/mountinfo") as fh:
            found |= {f"mount {line.split()[4]}" for line in fh
                      if line.split()[4].startswith(_BASETEMP[0])}
    return found


_BASETEMP: list[str] = []  # this run's temporary folder, once known


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # the run itself, not an xdist worker
        root = Path(session.config._tmp_path_factory.getbasetemp()).resolve()  # noqa: SLF001
        _BASETEMP[:] = [str(root.parent)]  # every worker's folder is beside it
        session.config.stash[_BEFORE] = leftovers()


def _others_sandboxes() -> set[str]:
    """Ids of sandboxes another run started: their lock (redline.sandbox.cgroups.hold) is
    held by a live process that is not this run's (another test run, a user's trial on the
    same machine). Those are not this run's to account for; a sandbox whose harness is gone
    (its lock free) is, whoever started it."""
    from redline.sandbox.cgroups import LOCKS

    inodes = {}
    for lock in LOCKS.glob("sb-*.lock"):
        try:
            inodes[lock.stat().st_ino] = lock.name[3:-5]
        except OSError:
            continue
    ours = {os.getpid(), *(c.pid for c in psutil.Process().children(recursive=True))}
    found = set()
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        parts = line.split()
        if len(parts) < 6 or parts[1] != "FLOCK" or not parts[4].isdigit():
            continue
        ino = int(parts[5].rsplit(":", 1)[-1])
        if ino in inodes and int(parts[4]) not in ours and psutil.pid_exists(int(parts[4])):
            found.add(inodes[ino])
    return found


def _this_runs(left: set[str]) -> set[str]:
    others = _others_sandboxes()
    return {item for item in left if not any(sid in item for sid in others)}


def _record_durations() -> None:
    """Merge this run's test durations into the file REDLINE_TEST_DURATIONS names."""
    target = os.environ.get("REDLINE_TEST_DURATIONS")
    if not target or not _TIMED:
        return
    path = Path(target)
    try:
        known = json.loads(path.read_text()) if path.exists() else {}
    except ValueError:
        known = {}
    # xdist's loadgroup adds "@group" to a grouped test's id: the file keeps the plain id
    known.update({k.split("@", 1)[0]: round(v, 1) for k, v in _TIMED.items()})
    path.write_text(json.dumps(dict(sorted(known.items())), indent=0) + "\n")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The whole run ends with the leak check over everything it started: what was not there
    when it began must be gone (a teardown may take a few seconds to finish)."""
    if hasattr(session.config, "workerinput") or _BEFORE not in session.config.stash:
        return
    _record_durations()
    before = session.config.stash[_BEFORE]
    deadline = time.monotonic() + LEAK_SETTLE_S
    while (left := _this_runs(leftovers() - before)) and time.monotonic() < deadline:
        time.sleep(0.5)
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("LEAK CHECK FAILED: the run left behind:", red=True)
            for item in sorted(left):
                reporter.write_line(f"  {item}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_BEFORE = pytest.StashKey[set]()
LEAK_SETTLE_S = 15.0


# ----- fixtures -----------------------------------------------------------------------------
@pytest.fixture
def agent_src(monkeypatch: pytest.MonkeyPatch):
    """Import the agent program's `src` package the way start.py does."""
    monkeypatch.syspath_prepend(str(TEMPLATE))
    for name in [m for m in sys.modules if m == "src" or m.startswith("src.")]:
        del sys.modules[name]
    import src  # noqa: PLC0415

    return src


@pytest.fixture
def reap() -> Iterator[list[int]]:
    """Process groups a test started; killed by their ids at the end, never by name."""
    pgids: list[int] = []
    yield pgids
    for pgid in pgids:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
