"""A multi-node Ray cluster on one machine, on loopback only: for the tests, the benchmark, and
for trying the cluster path before renting one.

Every node is a `ray start --block` process (its own session, so its whole tree can be ended
by the process group and PIDs this module started: never `ray stop`, which ends every Ray
process on the machine), bound to 127.0.0.1, with its own custom resource (`node_0`,
`node_1`, ...) so a trial's verdict shows where it ran. Token authentication is on, as on a
real cluster: a fresh token in RAY_AUTH_TOKEN for every process (`env`).

`private_network()` moves the calling process into a new network namespace with only `lo`
(needs root): whatever Ray then tries, it can reach nothing but loopback.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def private_network() -> list[str]:
    """This process (and what it starts later) in a new network namespace with `lo` up;
    returns the interface names now visible."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed (needs root)")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))
    return [name for _, name in socket.if_nameindex()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_bin() -> str:
    found = Path(sys.executable).with_name("ray")
    return str(found) if found.exists() else (shutil.which("ray") or "ray")


REGISTER_ATTEMPTS = 3
POLL_S = 1.0  # between two looks at the cluster's nodes (each look is a Ray driver)
REGISTER_TIMEOUT = "timed out during startup"  # Ray's words when a raylet did not register


class LocalCluster:
    def __init__(self, cpus_per_node: float = 1, root: Path | None = None,
                 token: str | None = None) -> None:
        self.cpus = cpus_per_node
        self._own_root = root is None  # removed at the end; a given root keeps the logs
        self.root = Path(root or tempfile.mkdtemp(prefix="rc-", dir="/tmp"))
        self.root.mkdir(parents=True, exist_ok=True)
        # Ray's socket paths must stay short (108 bytes): its session folder is one of ours
        # under /tmp, whatever `root` is.
        self.ray_tmp = Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp"))
        # A driver process reads the token once, when Ray starts in it: pass the same one to
        # every cluster a process drives.
        self.token = token or secrets.token_hex(24)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[subprocess.Popen] = []
        self.pids: set[int] = set()  # every process of the cluster this object ended
        self.home = self.root / "home"  # no ~/.ray of the user's is read or written
        self.home.mkdir(parents=True, exist_ok=True)

    @property
    def env(self) -> dict[str, str]:
        """The environment every process of this cluster (and its drivers) needs."""
        env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
        return {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token,
                "HOME": str(self.home), "RAY_USAGE_STATS_ENABLED": "0",
                "RAY_ADDRESS": self.address}

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_node(self, timeout_s: float = 90) -> int:
        """Start the next node (the first is the head); wait until the cluster counts it."""
        i = len(self.nodes)
        argv = [ray_bin(), "start", "--block", "--node-ip-address=127.0.0.1",
                f"--num-cpus={self.cpus:g}", f"--resources={json.dumps({f'node_{i}': 1})}",
                "--disable-usage-stats", f"--min-worker-port={20000 + i * 1000}",
                f"--max-worker-port={20000 + i * 1000 + 999}"]
        if i == 0:
            argv += ["--head", f"--port={self.port}", "--include-dashboard=false",
                     f"--temp-dir={self.ray_tmp}"]
        else:
            argv += [f"--address={self.address}"]
        # Ray gives a new raylet a fixed 30 s to register with the head, which a loaded
        # machine does not always meet ("timed out during startup"): that node's processes
        # are ended and it starts again, a bounded number of times.
        for attempt in range(1, REGISTER_ATTEMPTS + 1):
            with open(self.root / f"node_{i}.log", "ab") as log:
                proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=log,
                                        start_new_session=True)
            if attempt == 1:
                self.nodes.append(proc)
            else:
                self.nodes[i] = proc
            try:
                self.wait_for(i + 1, timeout_s)
                return i
            except RuntimeError as exc:
                if attempt == REGISTER_ATTEMPTS or REGISTER_TIMEOUT not in str(exc):
                    raise
                self.kill_node(i)
        raise AssertionError("unreachable")

    def alive_nodes(self) -> list[dict[str, Any]]:
        code = ("import json, sys, ray; ray.init(address=sys.argv[1], _node_ip_address="
                "'127.0.0.1', log_to_driver=False); print(json.dumps([{'ip': "
                "n['NodeManagerAddress'], 'resources': n['Resources']} for n in ray.nodes() "
                "if n['Alive']]))")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2):
                pass  # the head's GCS answers: asking it will not hang
            out = subprocess.run([sys.executable, "-c", code, self.address], env=self.env,
                                 capture_output=True, text=True, timeout=45)
        except (OSError, subprocess.TimeoutExpired):
            return []
        if out.returncode != 0:
            return []
        return json.loads(out.stdout.strip().splitlines()[-1])

    def wait_for(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for i, proc in enumerate(self.nodes):
                if proc.poll() is not None:
                    raise RuntimeError(f"ray node {i} exited: " + self.log(i)[-1500:])
            if len(self.alive_nodes()) >= count:
                return
            time.sleep(POLL_S)
        raise TimeoutError(f"{count} Ray nodes not up in {timeout_s} s: " + self.log(0)[-1500:])

    def log(self, i: int) -> str:
        return (self.root / f"node_{i}.log").read_text(errors="replace")

    def kill_node(self, i: int) -> list[int]:
        """SIGKILL node i: its process group and every process descended from it."""
        proc = self.nodes[i]
        try:
            tree = [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]
        except psutil.NoSuchProcess:
            tree = [proc.pid]
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(30)
        self.pids.update(tree)
        return tree

    def stop(self) -> None:
        for i in reversed(range(len(self.nodes))):
            self.kill_node(i)
        shutil.rmtree(self.ray_tmp, ignore_errors=True)
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)
