"""Start an AI system's two processes (LLM server, then agent) and wait until both are healthy.

Where the processes run is a parameter: on the host for `redline system start`, or inside a
sandbox for trials (the sandbox passes its own spawn and HTTP functions).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from redline import defaults

# spawn(argv, cwd, stdout_path, stderr_path) -> pid
Spawn = Callable[[list[str], str, Path, Path], int]
# get(url, timeout) -> status code (raises httpx.HTTPError when unreachable)
Get = Callable[[str, float], int]


class LaunchError(RuntimeError):
    """A process did not come up; the message names the log to read."""


@dataclass
class RunningSystem:
    folder: str
    llm_port: int
    agent_port: int
    llm_pid: int
    agent_pid: int


def host_spawn(argv: list[str], cwd: str, stdout: Path, stderr: Path) -> int:
    with open(stdout, "ab") as out, open(stderr, "ab") as err:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return proc.pid


def host_get(url: str, timeout: float) -> int:
    return httpx.get(url, timeout=timeout, trust_env=False).status_code


def wait_healthy(get: Get, url: str, timeout_s: float, alive: Callable[[], bool],
                 what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if get(url, 2.0) == 200:
                return
        except httpx.HTTPError:
            pass
        if not alive():
            raise LaunchError(f"{what} exited before it was healthy; see {log}")
        time.sleep(0.05)
    raise LaunchError(f"{what} not healthy at {url} within {timeout_s:.0f} s; see {log}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def start_system(
    folder: str,
    deploy_script: str,
    *,
    llm_port: int = defaults.LLM_PORT,
    agent_port: int = defaults.AGENT_PORT,
    log_dir: Path,
    spawn: Spawn = host_spawn,
    get: Get = host_get,
    python: str = "python3",
    llm_timeout_s: float = 300.0,
    agent_timeout_s: float = 60.0,
    alive: Callable[[int], bool] = pid_alive,
) -> RunningSystem:
    """`folder` is the path as the processes see it; `log_dir` is where logs go on this side;
    `deploy_script` is the LLM server's deploy script, relative to `folder`."""
    log_dir.mkdir(parents=True, exist_ok=True)
    llm_log = log_dir / "llm_server.log"
    llm_pid = spawn([python, deploy_script, "--port", str(llm_port)], folder, llm_log, llm_log)
    # The agent boots (imports) while the model loads; it waits for its LLM's first "Hello!".
    agent_log = log_dir / "agent.out"
    agent_pid = spawn([python, "start.py", "--port", str(agent_port), "--llm-port", str(llm_port),
                       "--llm-wait", str(llm_timeout_s)], folder, agent_log, agent_log)
    wait_healthy(get, f"http://127.0.0.1:{llm_port}/health", llm_timeout_s,
                 lambda: alive(llm_pid), "LLM server", llm_log)
    wait_healthy(get, f"http://127.0.0.1:{agent_port}/health", agent_timeout_s,
                 lambda: alive(agent_pid), "agent", agent_log)
    return RunningSystem(folder, llm_port, agent_port, llm_pid, agent_pid)
