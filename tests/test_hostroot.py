"""The sandbox's mounts name nothing: every bind source lives under the neutral folder while
the sandbox runs, and the trial's home and /tmp come back into its folder at teardown.

mountinfo's root column (findmnt's brackets) shows the host path of each bind's source; here
it must name neither the checkout, nor the trial's folder, nor the harness.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from redline.sandbox import Sandbox, SandboxConfig
from redline.sandbox.audit import MOUNTS, host_markers, scan
from redline.sandbox.hostroot import NEUTRAL_ROOT, open_store, staged, sweep
from redline.scenarios.adapt import INDEX_DIR
from redline.system.pyenv import ensure_env
from redline.system.wheelhouse import ensure_wheelhouse

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the neutral folder needs root")


def test_mounts_name_nothing_and_the_state_comes_home(tmp_path: Path) -> None:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "run").write_text("#!/bin/sh\necho tool\n")
    cfg = SandboxConfig(profile="paper", keep="always", python_env=str(ensure_env("scripted")),
                        extra_ro_binds=[(str(tmp_path / "tools"), "/opt/tools")])
    state = tmp_path / "trial" / "sandbox"
    with Sandbox(cfg, state) as sb:
        store = sb.store
        assert store is not None and store.parent == NEUTRAL_ROOT
        sb.exec(["bash", "-c", "echo kept > /root/agent/notes; echo t > /tmp/t"])
        assert sb.host_path("/root/agent/notes").read_text() == "kept\n"  # the host sees it
        outputs = {c: sb.exec(["bash", "-c", c]).stdout for c in MOUNTS}
        info = outputs["cat /proc/self/mountinfo"]
        for inner in ("/root", "/tmp", "/opt/venv", "/usr/bin", "/opt/tools"):
            line = next(x for x in info.splitlines() if x.split()[4] == inner)
            assert line.split()[3].startswith(f"{NEUTRAL_ROOT}/"), line
        assert sb.exec(["cat", "/opt/tools/run"]).stdout.endswith("echo tool\n")
    found = [f for c, o in outputs.items() for f in scan(c, o, host_markers([tmp_path]))]
    assert found == [], "\n".join(map(str, found))
    for sub, name, text in (("home", "agent/notes", "kept\n"), ("tmp", "t", "t\n")):
        assert not (state / sub).is_symlink() and (state / sub / name).read_text() == text
    assert not store.exists()


def test_a_trial_folder_on_another_filesystem_still_shows_a_neutral_path(tmp_path: Path) -> None:
    """A separate volume (here a tmpfs) for the runs: the stores go to `.userdata` at the top
    of that filesystem, which shows as `/.userdata/<id>`; never the trial's own folder."""
    vol = tmp_path / "volume"
    vol.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(vol)], check=True)
    try:
        state = vol / "runs" / "20261202-0400" / "replicate-20261202-040000-000" / "sandbox"
        with Sandbox(SandboxConfig(keep="always"), state) as sb:
            assert sb.store == vol / ".userdata" / sb.id
            sb.exec(["bash", "-c", "echo kept > /root/notes"])
            outputs = {c: sb.exec(["bash", "-c", c]).stdout for c in MOUNTS}
        home = next(x for x in outputs["cat /proc/self/mountinfo"].splitlines()
                    if x.split()[4] == "/root")
        assert home.split()[3] == f"/.userdata/{sb.id}/home", home
        found = [f for c, o in outputs.items() for f in scan(c, o, host_markers([tmp_path]))]
        assert found == [], "\n".join(map(str, found))
        assert not any("replicate-2026" in o or "/runs/" in o for o in outputs.values())
        assert (state / "home" / "notes").read_text() == "kept\n"
        assert list((vol / ".userdata").iterdir()) == []
    finally:
        subprocess.run(["umount", "-l", str(vol)], check=False)


def test_adapts_machine_names_nothing_either(tmp_path: Path) -> None:
    """adapt's obstacles change the mounts: the environment as an overlay (its lower folder is
    printed), the package index bound in, home and /tmp on a small disk."""
    env = ensure_env("scripted")
    cfg = SandboxConfig(keep="never", python_env=str(env), python_env_writable=True,
                        disk_size_mb=64, extra_ro_binds=[(str(ensure_wheelhouse(env)), INDEX_DIR)])
    with Sandbox(cfg, tmp_path / "sb") as sb:
        outputs = {c: sb.exec(["bash", "-c", c]).stdout for c in MOUNTS}
    info = outputs["cat /proc/self/mountinfo"]
    assert f"lowerdir=/oldroot{NEUTRAL_ROOT}/envs/" in info and INDEX_DIR in info
    assert "tmpfs[/home]" in outputs["findmnt; findmnt -D"]
    found = [f for c, o in outputs.items() for f in scan(c, o, host_markers([tmp_path]))]
    assert found == [], "\n".join(map(str, found))


def test_a_sandbox_not_kept_leaves_nothing(tmp_path: Path) -> None:
    with Sandbox(SandboxConfig(keep="never"), tmp_path / "sb") as sb:
        sb.exec(["bash", "-c", "head -c 100000 /dev/zero > /root/big"])
        store = sb.store
        assert store is not None and (store / "home" / "big").stat().st_size == 100000
    assert not store.exists() and not (tmp_path / "sb").exists()


def test_the_disk_limit_counts_the_store(tmp_path: Path) -> None:
    with Sandbox(SandboxConfig(keep="never", disk_mb=2), tmp_path / "sb") as sb:
        sb.exec(["bash", "-c", "head -c 3000000 /dev/urandom > /root/big"])
        assert sb.check_limits() == "disk limit of 2 MiB"


def test_stores_of_a_dead_harness_are_swept(tmp_path: Path) -> None:
    """A SIGKILLed harness never moved its sandbox's home back: the next one does, where the
    trial folder still links to it; a store nothing links to is deleted; a live one stays."""
    def dead_store(name: str, linked: bool) -> tuple[Path, Path]:
        store, state = NEUTRAL_ROOT / name, tmp_path / name
        state.mkdir()
        code = ("import sys; from pathlib import Path; from redline.sandbox.hostroot import "
                "open_store; open_store(Path(sys.argv[1]), Path(sys.argv[2]))")
        subprocess.run([sys.executable, "-c", code, str(store), str(state)], check=True)
        (store / "home").mkdir()
        (store / "home" / "notes").write_text(name)
        if linked:
            (state / "home").symlink_to(store / "home")
        old = time.time() - 120
        os.utime(store / ".lock", (old, old))
        return store, state

    kept, kept_state = dead_store(os.urandom(5).hex(), linked=True)
    gone, _ = dead_store(os.urandom(5).hex(), linked=False)
    live, live_state = NEUTRAL_ROOT / os.urandom(5).hex(), tmp_path / "live"
    fd = open_store(live, live_state)
    try:
        os.utime(live / ".lock", (time.time() - 120,) * 2)
        sweep(NEUTRAL_ROOT)
        assert not kept.exists() and (kept_state / "home" / "notes").read_text() == kept.name
        assert not (kept_state / "home").is_symlink()
        assert not gone.exists()
        assert live.exists()
    finally:
        os.close(fd)
        sweep(NEUTRAL_ROOT)
    assert not live.exists()


def test_a_staged_folder_is_a_linked_copy_renewed_when_it_changes(tmp_path: Path) -> None:
    src = tmp_path / "bin"
    src.mkdir()
    (src / "tool").write_text("v1")
    first = staged(src)
    assert first.parent == NEUTRAL_ROOT / "opt" and staged(src) == first
    if os.stat(src).st_dev == os.stat(NEUTRAL_ROOT).st_dev:  # a hard link: no copy
        assert os.path.samefile(first / "tool", src / "tool")
    (src / "lib.so").write_text("new")
    second = staged(src)
    assert second != first and (second / "lib.so").read_text() == "new"
    assert staged(first) == first  # already neutral
