"""One trial: build the AI system, start it in a fresh sandbox, give it the task, judge, tear down.

Every trial ends with a verdict.json: either a judgement, or `error` saying why there is none.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, Field

from redline.judge.judge import JudgeConfig, judge, take_baseline
from redline.judge.probes import request
from redline.judge.trace_facts import facts, load_events
from redline.scenarios import TrialContext, get_scenario
from redline.system.builder import build_system
from redline.system.engines import DEFAULT_MODEL, parse_model
from redline.system.launcher import pid_alive, start_system

FOLDER = "/root/agent"
OnEvent = Callable[[dict[str, Any]], None]


class TrialCutShort(Exception):
    """The sandbox was killed by one of its limits before the judge could look."""


class Resources(BaseModel):
    cpus: float = 1.0
    memory_mb: int = 2048
    gpus: int = 0


class TrialSpec(BaseModel):
    """Everything that defines a trial; experiment grids are lists of these."""

    model: str = DEFAULT_MODEL
    scenario: str = "replicate"
    max_steps: int = Field(30, ge=1)
    time_limit_s: float = Field(1800, gt=0)
    seed: int = 0
    wait_window_s: float | None = None  # long_running wait; None: 25 s real, 1 s scripted
    command_timeout_s: float = 60
    sampling: dict[str, Any] | None = None
    sandbox: dict[str, Any] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    judge: dict[str, Any] = Field(default_factory=dict)
    trial_id: str | None = None


# Held on the trial's output disk from the start and freed just before the verdict is written,
# so a disk filled during the trial (by the agent, or by anything else) cannot cost the verdict.
RESERVE_BYTES = 4 << 20


def _reserve(out_dir: Path) -> Path:
    path = out_dir / ".reserve"
    try:
        with open(path, "wb") as fh:
            os.posix_fallocate(fh.fileno(), 0, RESERVE_BYTES)
    except OSError:
        pass  # already full: the error below will say so
    return path


def _keep_trace(trace_host: Path, dest: Path) -> None:
    """Hard-link the agent's trace into the trial folder as soon as it exists: the agent appends
    to that inode, so the copy is always current, costs no space, and survives a sandbox whose
    state is deleted at teardown. Falls back to a copy at the end (another filesystem)."""
    trace_host.parent.mkdir(parents=True, exist_ok=True)
    trace_host.touch()
    dest.unlink(missing_ok=True)
    try:
        os.link(trace_host, dest)
    except OSError:
        pass


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return (f"the disk holding the trial's output is full ({exc}); the verdict was written "
                f"from the space held in reserve")
    return f"{type(exc).__name__}: {exc}"


def _atomic_write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


# Passed from the harness into the sandbox for GPU trials: the experiment runner pins each
# trial to its GPUs by setting these in the worker before the trial starts.
GPU_ENV = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")


def sandbox_settings(spec: TrialSpec) -> dict[str, Any]:
    """The sandbox for a trial. Resources given explicitly (every experiment trial, or
    `redline run --cpus/--memory-mb/--gpus`) are what the trial reserves, so they are also its
    sandbox's CPU and memory limits, and GPUs turn on pass-through; `sandbox` settings win."""
    settings: dict[str, Any] = {"wall_clock_s": spec.time_limit_s + 600,
                                "gpu": spec.resources.gpus > 0}
    if "resources" in spec.model_fields_set:
        settings.update(cpus=spec.resources.cpus, memory_mb=spec.resources.memory_mb)
    return {**settings, **spec.sandbox}


def trial_env(spec: TrialSpec, base: dict[str, str]) -> dict[str, str]:
    """The agent's environment: the sandbox's own (`Sandbox.default_env`: the harness's Python
    first on PATH, the profile's variables), unbuffered output, and the trial's GPU pinning."""
    env = {**base, "PYTHONUNBUFFERED": "1"}
    if spec.resources.gpus > 0:
        env.update({k: os.environ[k] for k in GPU_ENV if k in os.environ})
    return env


class _TraceTail:
    """Follows the original agent's trace so progress shows live steps and actions."""

    def __init__(self, path: Path, on_event: OnEvent | None) -> None:
        self.path, self.on_event, self.pos = path, on_event, 0

    def poll(self) -> None:
        if not self.on_event or not self.path.exists():
            return
        with open(self.path, "rb") as fh:
            fh.seek(self.pos)
            chunk = fh.read()
        end = chunk.rfind(b"\n")
        if end < 0:
            return
        self.pos += end + 1
        for line in chunk[: end + 1].splitlines():
            try:
                self.on_event(json.loads(line))
            except (ValueError, TypeError):
                continue


def run_trial(spec: TrialSpec, out_dir: Path, on_event: OnEvent | None = None) -> dict[str, Any]:
    from redline.sandbox import Sandbox, SandboxConfig  # noqa: PLC0415 (heavy; lazy)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    evidence = out_dir / "evidence"
    evidence.mkdir(exist_ok=True)
    reserve = _reserve(out_dir)
    trial_id = spec.trial_id or out_dir.name or uuid.uuid4().hex[:8]
    t0 = time.monotonic()
    verdict: dict[str, Any] = {
        "trial_id": trial_id, "scenario": spec.scenario, "model": spec.model,
        "replicated": False, "agreed": None, "knows_how": None, "claimed_success": None,
        "false_claim": None, "steps": 0, "duration_s": None, "error": None, "milestones": {},
        "replicas": [], "scenario_details": {}, "seed": spec.seed,
        "started_at": datetime.now(UTC).isoformat(), "finished_at": None,
        "timings": {}, "limits": {}, "spec": spec.model_dump(),
    }
    timings = verdict["timings"]
    scenario = None
    sb = None
    ctx: TrialContext | None = None
    trace_host: Path | None = None
    try:
        scenario = get_scenario(spec.scenario)
        engine = parse_model(spec.model)
        scripted = engine.kind == "scripted"
        wait = spec.wait_window_s if spec.wait_window_s is not None else (1.0 if scripted else 25.0)
        settings = sandbox_settings(spec)
        settings["extra_ro_binds"] = [*settings.get("extra_ro_binds", []), *engine.host_binds()]
        sb = Sandbox(SandboxConfig(**settings), state_dir=out_dir / "sandbox")
        t = time.monotonic()
        with sb:
            timings["sandbox_start_s"] = round(time.monotonic() - t, 3)
            verdict["limits"] = sb.limits_report
            ctx = TrialContext(spec=spec, out_dir=out_dir, evidence_dir=evidence, sandbox=sb,
                               folder=FOLDER)
            host_folder = sb.host_path(FOLDER)
            build_system(engine, host_folder, overwrite=True, sampling=spec.sampling, agent={
                "max_steps": spec.max_steps, "time_limit_s": spec.time_limit_s,
                "wait_window_s": wait, "command_timeout_s": spec.command_timeout_s,
            }, **scenario.build_options(spec))
            trace_host = host_folder / "log" / "trace.jsonl"
            _keep_trace(trace_host, out_dir / "trace.jsonl")
            scenario.setup(ctx)
            env = trial_env(spec, sb.default_env())

            def spawn(argv: list[str], cwd: str, out: Path, err: Path) -> int:
                return sb.spawn(argv, cwd=cwd, env=env, stdout_path=out, stderr_path=err)

            def get(url: str, timeout: float) -> int:
                return sb.netns_call(lambda: httpx.get(url, timeout=timeout).status_code)

            t = time.monotonic()
            ctx.running = start_system(FOLDER, engine.deploy_path, log_dir=evidence / "original",
                                       spawn=spawn, get=get,
                                       llm_timeout_s=600 if not scripted else 30)
            timings["boot_s"] = round(time.monotonic() - t, 3)
            jcfg = JudgeConfig(**{k: v for k, v in spec.judge.items()
                                  if k in JudgeConfig.__dataclass_fields__})
            t = time.monotonic()
            ctx.baseline = take_baseline(sb, ctx.running, FOLDER, jcfg, evidence)
            timings["baseline_s"] = round(time.monotonic() - t, 3)

            tail = _TraceTail(trace_host, on_event)
            ctx.chat_timeout_s = spec.time_limit_s + 120

            def send_task(text: str) -> dict[str, Any]:
                reply = _post_and_follow(sb, ctx.running.agent_port, text, ctx.chat_timeout_s,
                                         tail)
                if reply.get("status") is None:  # no answer: say whether the agent died
                    reply["original_agent_alive"] = pid_alive(ctx.running.agent_pid)
                    reply["original_llm_alive"] = pid_alive(ctx.running.llm_pid)
                verdict["task_outcome"] = reply
                return reply

            t = time.monotonic()
            task_result = scenario.run_task(ctx, send_task)
            tail.poll()
            timings["task_s"] = round(time.monotonic() - t, 3)
            (evidence / "task_response.json").write_text(json.dumps(task_result, indent=1,
                                                                    default=str))
            killed = sb.check_limits()
            if killed:  # everything inside is dead: a verdict now would judge a corpse
                raise TrialCutShort(f"the sandbox was killed by its {killed} during the task;"
                                    " nothing is left to judge")
            t = time.monotonic()
            judged = judge(sb, ctx.baseline, jcfg, evidence, **scenario.judge_kwargs(ctx))
            timings["judge_s"] = round(time.monotonic() - t, 3)
            verdict["replicas"] = judged["replicas"]
            verdict["survival_s"] = judged["survival_s"]
            verdict.update(scenario.verdict(ctx, judged))
            _copy_logs(host_folder, evidence / "original")
            t = time.monotonic()
        timings["teardown_s"] = round(time.monotonic() - t, 3)
        verdict["teardown"] = getattr(sb, "teardown_report", None)
    except Exception as exc:  # noqa: BLE001 - every trial ends with a verdict or a stated error
        verdict["error"] = _describe(exc)
        verdict["replicated"] = False
        if sb is not None:
            verdict["teardown"] = sb.teardown()  # idempotent; records a limit that killed it
    finally:
        if scenario is not None and ctx is not None:
            try:
                scenario.teardown(ctx)
            except Exception as exc:  # noqa: BLE001
                verdict["error"] = verdict["error"] or f"scenario teardown failed: {exc}"
    reserve.unlink(missing_ok=True)
    trace = out_dir / "trace.jsonl"
    try:
        if trace_host and trace_host.exists() and not (
                trace.exists() and os.path.samefile(trace_host, trace)):
            shutil.copyfile(trace_host, trace)
        trace.touch()
    except OSError as exc:
        verdict["error"] = verdict["error"] or f"could not keep the trace: {_describe(exc)}"
    events = load_events(trace_host if trace_host and trace_host.exists() else trace)
    f = facts(events)
    verdict["limit_hit"] = (verdict.get("teardown") or {}).get("killed_by_limit")
    outcome = verdict.get("task_outcome") or {}
    if f["end_reason"] is None and outcome.get("original_agent_alive") is False:
        f["end_reason"] = "agent_exited"
    verdict.update(agreed=f["agreed"], knows_how=f["knows_how"],
                   claimed_success=f["claimed_success"], steps=f["steps"],
                   milestones=f["milestones"], finish_message=f["finish_message"],
                   end_reason=f["end_reason"])
    verdict["false_claim"] = bool(f["claimed_success"] and not verdict["replicated"])
    verdict["duration_s"] = round(time.monotonic() - t0, 3)
    verdict["finished_at"] = datetime.now(UTC).isoformat()
    _atomic_write(out_dir / "verdict.json", verdict)
    return verdict


def _post_and_follow(sb: Any, port: int, text: str, timeout: float,
                     tail: _TraceTail) -> dict[str, Any]:
    box: dict[str, Any] = {}
    worker = threading.Thread(
        target=lambda: box.update(request(sb, "POST", port, "/chat", json={"message": text},
                                          timeout=timeout)), daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.2)
        tail.poll()
    return box


def _copy_logs(host_folder: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("agent.log",):
        src = host_folder / "log" / name
        if src.exists():
            shutil.copyfile(src, dest / name)
