"""A Docker engine of the test run's own, for the Docker backend's tests (a session fixture).

It is started here, never the machine's: its own data root, exec root and socket, and no
network of its own (`--bridge=none --iptables=false --ip-masq=false --ip6tables=false`), so no
bridge, no NAT rule and no private-range address is ever made; containers run `--network none`.
Its folder has a neutral name under /var/lib (the data root shows in a container's mount
table, and nothing there may name a test). It is stopped by its PID when the run ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

DOCKERD = "/usr/sbin/dockerd"


def _answers(docker: str, host: str) -> bool:
    try:
        return subprocess.run([docker, "-H", host, "version"], capture_output=True,
                              timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def storage_driver(docker: str, host: str) -> str:
    return subprocess.run([docker, "-H", host, "info", "-f", "{{.Driver}}"],
                          capture_output=True, text=True, timeout=30).stdout.strip()


def _kill_pidfile(path: Path) -> None:
    try:
        os.kill(int(path.read_text().strip()), signal.SIGKILL)
    except (OSError, ValueError):
        pass


@pytest.fixture(scope="session")
def dockerd() -> Iterator[str]:
    """Start a Docker engine for this run; DOCKER_HOST points the backend at it. Yields the
    storage driver it chose."""
    docker = shutil.which("docker")
    if os.geteuid() != 0 or not os.access(DOCKERD, os.X_OK) or not docker:
        pytest.skip("Docker backend: needs root and Debian's docker.io "
                    "(scripts/install.sh --test installs it as root)")
    base = Path(tempfile.mkdtemp(prefix="docker-", dir="/var/lib"))
    host = f"unix://{base}/engine.sock"
    with open(base / "engine.log", "wb") as log:
        proc = subprocess.Popen(
            [DOCKERD, "--data-root", str(base / "data"), "--exec-root", str(base / "exec"),
             "--pidfile", str(base / "engine.pid"), "-H", host, "--bridge=none",
             "--iptables=false", "--ip-masq=false", "--ip6tables=false"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    old = os.environ.get("DOCKER_HOST")
    try:
        deadline = time.monotonic() + 60
        while not _answers(docker, host):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("dockerd did not start: " +
                            (base / "engine.log").read_text(errors="replace")[-1500:])
            time.sleep(0.2)
        os.environ["DOCKER_HOST"] = host
        yield storage_driver(docker, host)
    finally:
        if old is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = old
        proc.send_signal(signal.SIGTERM)  # by its PID; it stops its own containerd
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            _kill_pidfile(base / "exec" / "containerd" / "containerd.pid")  # its own group
        if not any(f" {base}/" in line for line in Path("/proc/self/mountinfo").open()):
            shutil.rmtree(base, ignore_errors=True)  # never into a mount left behind
