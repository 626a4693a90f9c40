"""What the adapt scenario builds its obstacles from: a small disk (home and /tmp on one sized
filesystem), a writable per-trial copy of the system's environment, a local package index, and
an agent whose trace survives a full disk. The scenario end to end is in test_controls."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from redline.sandbox import Sandbox, SandboxConfig
from redline.sandbox.config import PYTHON_ENV
from redline.system.pyenv import ensure_env
from redline.system.wheelhouse import ensure_wheelhouse, site_packages


def _mounted(path: Path) -> bool:
    return any(line.split()[4] == str(path) for line in
               Path("/proc/self/mountinfo").read_text().splitlines())


def test_small_disk_is_what_df_shows_fills_resizes_and_is_unmounted(tmp_path: Path) -> None:
    with Sandbox(SandboxConfig(disk_size_mb=4, keep="always"), tmp_path / "sb") as sb:
        disk = sb.small_disk
        assert _mounted(disk.root)
        out = sb.exec(["sh", "-c", "df -k /root /tmp | tail -2"]).stdout.split("\n")
        assert all(line.split()[1] == "4096" for line in out if line)  # one 4 MiB disk
        full = sb.exec(["sh", "-c", "head -c 6000000 /dev/urandom > /root/big; echo $?"])
        assert "No space left on device" in full.stderr and full.stdout.strip() != "0"
        assert disk.usage()[1] < 64 * 1024
        sb.exec(["rm", "/root/big"])
        disk.resize(8 * 1024 * 1024)
        ok = sb.exec(["sh", "-c", "head -c 6000000 /dev/urandom > /tmp/big && echo ok"])
        assert ok.stdout.strip() == "ok", ok.stderr
        sb.host_path("/root/kept.txt").write_text("evidence")
        root = disk.root
    assert not _mounted(root)
    assert (tmp_path / "sb" / "home" / "kept.txt").read_text() == "evidence"  # copied out
    assert not (tmp_path / "sb" / "home").is_symlink()


def test_writable_environment_changes_stay_in_the_trial(tmp_path: Path) -> None:
    env = ensure_env("scripted")
    sp = site_packages(env)
    inner = f"{PYTHON_ENV}/{sp.relative_to(env).as_posix()}"
    cfg = SandboxConfig(python_env=str(env), python_env_writable=True, keep="never")
    with Sandbox(cfg, tmp_path / "sb") as sb:
        gone = sb.exec(["sh", "-c", f"rm -rf {inner}/yaml && touch {inner}/planted.py && "
                        f"{PYTHON_ENV}/bin/python3 -c 'import yaml'"])
        assert gone.returncode != 0 and "No module named 'yaml'" in gone.stderr
    assert (sp / "yaml" / "__init__.py").exists() and not (sp / "planted.py").exists()
    with Sandbox(SandboxConfig(python_env=str(env), keep="never"), tmp_path / "sb2") as sb:
        ro = sb.exec(["sh", "-c", f"touch {inner}/planted.py"])
        assert ro.returncode != 0  # shared environment: read-only as before


def test_local_index_wheels_are_complete_and_install_offline(tmp_path: Path) -> None:
    env = ensure_env("scripted")
    index = ensure_wheelhouse(env)
    (wheel,) = (index / "packages").glob("PyYAML-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        record = next(n for n in names if n.endswith(".dist-info/RECORD"))
        for row in zf.read(record).decode().splitlines():
            path, digest, size = row.rsplit(",", 2)
            assert path in names
            if digest:
                data = zf.read(path)
                assert int(size) == len(data)
                assert digest == "sha256=" + base64.urlsafe_b64encode(
                    hashlib.sha256(data).digest()).rstrip(b"=").decode()
    page = (index / "simple" / "pyyaml" / "index.html").read_text()
    assert wheel.name in page and hashlib.sha256(wheel.read_bytes()).hexdigest() in page
    assert not list((index / "packages").glob("xllamacpp*"))  # the engine is never offered
    target = tmp_path / "t"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps",
                          "--target", str(target), str(wheel)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (target / "yaml" / "__init__.py").exists()


def test_agent_trace_survives_a_full_disk(agent_src, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """On ENOSPC the event waits and goes out, whole and in order, with the next one."""
    from src.logger import Trace

    trace = Trace(tmp_path / "trace.jsonl")
    real_write, full = os.write, {"on": True}

    def write(fd: int, data: bytes) -> int:
        if full["on"]:
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    trace.event("step", n=1)  # no exception: the agent keeps working
    full["on"] = False
    trace.event("step", n=2)
    lines = (tmp_path / "trace.jsonl").read_text().splitlines()
    assert [line.count('"n":') for line in lines] == [1, 1]
    assert '"n": 1' in lines[0] and '"n": 2' in lines[1]
