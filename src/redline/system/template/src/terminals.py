"""The agent's five terminals: run shell commands without ever blocking on a detached child.

Output goes to files, never pipes, so a command that leaves a background process behind
(`nohup python start.py &`) returns as soon as its shell exits. Every command starts in a new
session, so processes it starts outlive the agent and are not hit by signals meant for it.
Each command runs in a fresh `bash` in the terminal's current directory; `cd` carries over.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

WRAPPER = (
    'cd -- "$__TERM_CWD" 2>/dev/null; eval "$__TERM_CMD"; __term_rc=$?; '
    'pwd > "$__TERM_CWD_FILE"; exit $__term_rc'
)


@dataclass
class ToolResult:
    """What a tool did, as facts; the agent's prompt style turns `status_code` and `facts`
    into the status sentence the model reads (prompts/status.yaml)."""

    status_code: str  # returned, timeout, started, start_failed, still_running, exited, idle, busy
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    duration_s: float = 0.0
    facts: dict = field(default_factory=dict)  # command, terminal, ...


@dataclass
class Terminal:
    tid: str
    cwd: str
    proc: subprocess.Popen | None = None
    command: str | None = None
    out_path: Path | None = None
    err_path: Path | None = None
    offsets: list[int] = field(default_factory=lambda: [0, 0])

    @property
    def busy(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def truncate(text: str, limit: int) -> str:
    """Keep head and tail so both the command's start and its final error stay visible."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters truncated ...]\n{text[-half:]}"


class Terminals:
    def __init__(
        self,
        workdir: str,
        scratch: Path | None = None,
        count: int = 5,
        command_timeout_s: float = 60.0,
        wait_window_s: float = 25.0,
        max_output_chars: int = 4000,
    ) -> None:
        self.scratch = Path(scratch or tempfile.mkdtemp(prefix="terminals-"))
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.terminals = {str(i): Terminal(str(i), workdir) for i in range(1, count + 1)}
        self.command_timeout_s = command_timeout_s
        self.wait_window_s = wait_window_s
        self.max_output_chars = max_output_chars
        self._seq = 0

    def states(self) -> dict[str, str | None]:
        """Terminal id -> the long-running command it is busy with, or None when idle."""
        return {tid: t.command if t.busy else None for tid, t in self.terminals.items()}

    def _terminal(self, tid: object) -> Terminal:
        key = str(tid).strip()
        if key not in self.terminals:
            raise KeyError(f"terminal_id must be one of {', '.join(self.terminals)}, got {tid!r}")
        return self.terminals[key]

    def _spawn(self, term: Terminal, command: str) -> subprocess.Popen:
        self._seq += 1
        base = self.scratch / f"t{term.tid}-{self._seq}"
        term.out_path, term.err_path = base.with_suffix(".out"), base.with_suffix(".err")
        term.offsets = [0, 0]
        env = dict(os.environ)
        env.update(__TERM_CWD=term.cwd, __TERM_CMD=command, __TERM_CWD_FILE=str(base) + ".cwd")
        # Which agent's terminal started a process, kept by everything it starts in turn.
        env["AGENT_TERMINAL"] = f"{os.getpid()}:{term.tid}"
        with open(term.out_path, "wb") as out, open(term.err_path, "wb") as err:
            return subprocess.Popen(
                ["bash", "-c", WRAPPER],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                start_new_session=True,
            )

    def _read_new(self, term: Terminal) -> tuple[str, str]:
        texts = []
        for i, path in enumerate((term.out_path, term.err_path)):
            if path is None or not path.exists():
                texts.append("")
                continue
            with open(path, "rb") as fh:
                fh.seek(term.offsets[i])
                data = fh.read()
            term.offsets[i] += len(data)
            texts.append(truncate(data.decode("utf-8", "replace"), self.max_output_chars))
        return texts[0], texts[1]

    def _finish(self, term: Terminal) -> None:
        cwd_file = Path(str(term.out_path)[: -len(".out")] + ".cwd") if term.out_path else None
        if cwd_file and cwd_file.exists():
            new = cwd_file.read_text().strip()
            if new:
                term.cwd = new
        term.proc, term.command = None, None

    def execute(self, tid: object, command: str, command_type: str = "one_time") -> ToolResult:
        start = time.monotonic()
        term = self._terminal(tid)
        if not isinstance(command, str) or not command.strip():
            raise ValueError("command must be a non-empty string")
        if command_type not in ("one_time", "long_running"):
            raise ValueError("command_type must be 'one_time' or 'long_running'")
        facts = {"command": command, "terminal": term.tid}
        if term.busy:
            return ToolResult("busy", facts={**facts, "busy_with": term.command})
        term.command = command
        term.proc = proc = self._spawn(term, command)
        if command_type == "one_time":
            try:
                proc.wait(timeout=self.command_timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                out, err = self._read_new(term)
                self._finish(term)
                return ToolResult("timeout", out, err, None, time.monotonic() - start, facts)
            out, err = self._read_new(term)
            self._finish(term)
            return ToolResult("returned", out, err, proc.returncode, time.monotonic() - start,
                              facts)
        deadline = start + self.wait_window_s
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        out, err = self._read_new(term)
        if proc.poll() is None:
            return ToolResult("started", out, err, None, time.monotonic() - start, facts)
        rc = proc.returncode
        self._finish(term)
        return ToolResult("start_failed" if rc != 0 else "exited", out, err, rc,
                          time.monotonic() - start, facts)

    def receive(self, tid: object) -> ToolResult:
        start = time.monotonic()
        term = self._terminal(tid)
        facts = {"command": term.command, "terminal": term.tid}
        if term.proc is None:
            return ToolResult("idle", facts=facts)
        out, err = self._read_new(term)
        if term.proc.poll() is None:
            return ToolResult("still_running", out, err, None, time.monotonic() - start, facts)
        rc = term.proc.returncode
        self._finish(term)
        return ToolResult("exited", out, err, rc, time.monotonic() - start, facts)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
