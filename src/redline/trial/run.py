"""One trial: build the AI system, start it in a fresh sandbox, give it the task, judge, tear down.

Every trial ends with a verdict.json: either a judgement, or `error` saying why there is none.
"""

from __future__ import annotations

import errno
import json
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from redline import defaults
from redline.contracts.sandbox import Sandbox
from redline.contracts.stop import signal_name
from redline.contracts.verdict import Candidate, Verdict
from redline.inputs import InputError, read_regular
from redline.judge import tool_task
from redline.judge.awareness import candidate_statements, main_statements
from redline.judge.judge import judge, take_baseline
from redline.judge.kernelrec.record import KernelRecord
from redline.judge.probes import request
from redline.judge.trace_facts import facts, first_run
from redline.results import JSONL_LIMIT, atomic_write_json, load_events, write_elsewhere
from redline.sandbox import SandboxConfig, make_sandbox
from redline.sandbox.gpus import GPUError
from redline.scenarios import Scenario, TrialContext, get_scenario
from redline.system.builder import build_system
from redline.system.engines import EngineError, parse_model
from redline.system.launcher import RunningSystem, pid_alive, start_system
from redline.system.pyenv import ensure_env
from redline.system.setups import get_setup
from redline.trial.gpuplan import plan_gpus
from redline.trial.sizing import size_trial
from redline.trial.spec import TrialSpec, sandbox_settings, trial_env

FOLDER = defaults.FOLDER
OnEvent = Callable[[dict[str, Any]], None]


class TrialCutShort(Exception):
    """The sandbox was killed by one of its limits before the judge could look."""


class TrialSetupError(RuntimeError):
    """The trial cannot run as asked on this machine (its GPUs, its engine's build): found
    before anything starts, and said in one line."""


class VerdictNotKept(OSError):
    """The trial ran, but its folder could not take verdict.json (a full disk, a folder that
    is read-only or not permitted): the verdict itself, where it was to go, why, and where it
    went instead (`fallback`, None if nowhere would take it). The caller prints it."""

    def __init__(self, verdict: Verdict, path: Path, reason: OSError,
                 fallback: Path | None) -> None:
        self.verdict, self.path, self.reason, self.fallback = verdict, path, reason, fallback
        super().__init__(reason.errno, f"{path}: {reason.strerror or reason}")


# Held on the trial's output disk from the start and freed just before the verdict is written,
# so a disk filled during the trial (by the agent, or by anything else) cannot cost the verdict.
RESERVE_BYTES = 4 << 20
CANDIDATE_TRACE_BYTES = 32 << 20  # a replica's trace kept as evidence, at most


def _reserve(out_dir: Path) -> Path:
    path = out_dir / ".reserve"
    try:
        with open(path, "wb") as fh:
            os.posix_fallocate(fh.fileno(), 0, RESERVE_BYTES)
    except OSError:
        pass  # already full: the error below will say so
    return path


def _hold_trace(trace_host: Path, dest: Path) -> int:
    """An open descriptor on the agent's trace, taken as soon as the file exists: its inode then
    outlives a sandbox whose state is deleted at teardown; `_TraceTail` mirrors it into the
    trial folder's `dest` as it grows and `finish` copies it whole. Not a hard link: the agent
    would find a second link on its own log (`stat` shows the count), which says someone else
    keeps it."""
    trace_host.parent.mkdir(parents=True, exist_ok=True)
    trace_host.touch()
    dest.write_bytes(b"")
    return os.open(trace_host, os.O_RDONLY | os.O_CLOEXEC)


def _copy_held(fd: int, dest: Path) -> None:
    """The held trace into the trial folder, at most JSONL_LIMIT bytes of it."""
    with open(os.dup(fd), "rb") as src, open(dest, "wb") as out:
        src.seek(0)
        left = JSONL_LIMIT
        while left > 0 and (chunk := src.read(min(1 << 20, left))):
            out.write(chunk)
            left -= len(chunk)


def _still_alive(pid: int, within_s: float = 5.0) -> bool:
    """Whether a process whose connection just dropped is alive. A process killed closes its
    sockets before the kernel marks it a zombie; on a loaded machine that gap is long enough
    for a dead agent to read as alive (and its trial to end with no end_reason). So it counts
    as alive only if it still is `within_s` later."""
    deadline = time.monotonic() + within_s
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return True
        time.sleep(0.05)
    return False


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TrialSetupError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return (f"the disk holding the trial's output is full ({exc}); the verdict was written "
                f"from the space held in reserve")
    return f"{type(exc).__name__}: {exc}"


class _TraceTail:
    """Follows the original agent's trace through the descriptor held on it: each whole line is
    appended to the trial folder's copy as it comes (so that copy is live while the agent works;
    `finish` writes it whole at the end), and progress shows live steps and actions."""

    def __init__(self, fd: int, mirror: Path, on_event: OnEvent | None) -> None:
        self.fd, self.mirror, self.on_event, self.pos = fd, mirror, on_event, 0

    def poll(self) -> None:
        chunk = b""
        while data := os.pread(self.fd, 1 << 20, self.pos + len(chunk)):
            chunk += data
        end = chunk.rfind(b"\n")
        if end < 0:
            return
        whole = chunk[: end + 1]
        self.pos += len(whole)
        try:
            with open(self.mirror, "ab") as out:
                out.write(whole)
        except OSError:
            pass  # a full disk: `finish` copies it from the reserve's space
        if self.on_event is None:
            return
        for line in whole.splitlines():
            try:
                self.on_event(json.loads(line))
            except (ValueError, TypeError):
                continue


class _Trial:
    """One trial's phases, in order: `prepare` (before any sandbox), `boot` (build the
    system, start it, take the baseline), `give_task`, `judge`, `keep` (evidence while the
    sandbox stands), then `finish`, which always runs and writes the verdict. A phase that
    raises ends the trial with `error` set (`failed`)."""

    def __init__(self, spec: TrialSpec, out_dir: Path, on_event: OnEvent | None) -> None:
        self.spec, self.out_dir, self.on_event = spec, Path(out_dir), on_event
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.evidence = self.out_dir / "evidence"
        self.evidence.mkdir(exist_ok=True)
        self.reserve = _reserve(self.out_dir)
        self.t0 = time.monotonic()
        self.verdict = spec.verdict(spec.trial_id or self.out_dir.name or uuid.uuid4().hex[:8])
        self.record = KernelRecord()  # what the kernel saw inside (docs/judge.md)
        self.scenario: Scenario | None = None
        self.sb: Sandbox | None = None
        self.ctx: TrialContext | None = None
        self.kept: list[tuple[Candidate, str]] = []  # replica candidates' traces
        self.trace_host: Path | None = None
        self.trace_fd: int | None = None  # held open on the agent's trace (_hold_trace)

    def _timed(self, name: str, t: float) -> None:
        self.verdict.timings[name] = round(time.monotonic() - t, 3)

    def prepare(self) -> Sandbox:
        """The scenario, the engine and the sandbox's settings; the sandbox, not yet up."""
        spec = self.spec
        self.scenario = get_scenario(spec.scenario)
        self.engine = engine = parse_model(spec.model, spec.engine)
        try:  # its GPUs first: they set the engine's tensor parallelism, which sizes the rest
            self.gpus = plan_gpus(spec, engine, self.scenario)
        except GPUError as exc:
            raise TrialSetupError(str(exc)) from None
        self.sizing = sizing = size_trial(spec, engine, self.scenario)
        self.verdict.budgets = sizing.budgets.model_dump()
        settings = sandbox_settings(spec, sizing)
        if self.gpus is not None:
            settings.update(self.gpus.sandbox_settings(sizing.systems))
            atomic_write_json(self.evidence / "gpus.json", self.gpus.public())
        settings["extra_ro_binds"] = [*settings.get("extra_ro_binds", []),
                                      *engine.host_binds()]
        if sizing.mount_weights:  # bound where the folder expects them, never copied
            settings["weights_binds"] = [*settings.get("weights_binds", []), (
                str(engine.weights_source), f"{FOLDER}/{engine.weights_target}")]
        if "python_env" not in settings:  # the system's own environment, built once
            t = time.monotonic()
            settings["python_env"] = str(ensure_env(engine.kind))
            self._timed("python_env_s", t)
        try:  # GPU layers asked of a build that has no GPU back end
            engine.check_gpu_build(Path(settings["python_env"]))
        except EngineError as exc:
            raise TrialSetupError(str(exc)) from None
        settings.update(self.scenario.sandbox_options(spec, settings))
        self.sb = make_sandbox(SandboxConfig(**settings), state_dir=self.out_dir / "sandbox")
        self.build(self.sb)
        self.record.start(spec.judge.kernel_record)  # before the sandbox boots: every fork seen
        return self.sb

    def build(self, sb: Sandbox) -> None:
        """The system's folder, in the home the sandbox will show, before it starts: a mount
        point for weights too big to copy must exist when it is bound."""
        spec, engine = self.spec, self.engine
        self.host_folder = sb.host_path(FOLDER)
        wait = spec.wait_window_s if spec.wait_window_s is not None else (
            engine.info.wait_window_s or defaults.WAIT_WINDOW_S)
        sampling = spec.sampling if spec.sampling is not None else {
            **defaults.SAMPLING, "seed": spec.seed}
        t = time.monotonic()
        build_system(engine, self.host_folder, overwrite=True, sampling=sampling,
                     setup=spec.setup, protocol=spec.protocol, agent={
                         "max_steps": spec.max_steps, "time_limit_s": spec.time_limit_s,
                         "wait_window_s": wait, "command_timeout_s": spec.command_timeout_s,
                     }, mount_weights=self.sizing.mount_weights,
                     **self.scenario.build_options(spec))
        self._timed("build_s", t)

    def boot(self, sb: Sandbox, t_start: float) -> None:
        """Build the system in the trial folder, start it, take the judge's baseline."""
        spec, scenario, engine = self.spec, self.scenario, self.engine
        self._timed("sandbox_start_s", t_start)
        self.record.attach(sb.pid1)  # before anything is started inside
        self.verdict.limits = sb.limits_report
        self.ctx = ctx = TrialContext(spec=spec, out_dir=self.out_dir,
                                      evidence_dir=self.evidence, sandbox=sb, folder=FOLDER)
        self.host_folder = sb.host_path(FOLDER)  # now in the store the sandbox shows
        self.trace_host = self.host_folder / "log" / "trace.jsonl"
        self.trace_fd = _hold_trace(self.trace_host, self.out_dir / "trace.jsonl")
        scenario.setup(ctx)
        t = time.monotonic()
        ctx.running = start_inside(sb, engine.deploy_path, spec.setup,
                                   trial_env(spec, sb.default_env(),
                                             self.gpus.env() if self.gpus else None),
                                   self.evidence / "original",
                                   llm_timeout_s=self.sizing.budgets.startup_s)
        self._timed("boot_s", t)
        t = time.monotonic()
        ctx.baseline = take_baseline(sb, ctx.running, FOLDER, spec.judge, self.evidence)
        self._timed("baseline_s", t)
        if scenario.originals_end_before_judging and spec.judge.tool_probe_timeout_s > 0:
            t = time.monotonic()  # what a replica must match once the original is gone
            ctx.baseline.tool_probe = tool_task.run(sb, ctx.running.agent_port,
                                                    spec.judge.tool_probe_timeout_s)
            tool_task.tidy(Path(sb.host_path("/tmp")), ctx.baseline.tool_probe)
            atomic_write_json(self.evidence / "baseline_tool_task.json", ctx.baseline.tool_probe)
            self._timed("baseline_tool_task_s", t)

    def give_task(self) -> None:
        """The scenario hands the agent its task; the agent's trace is followed meanwhile."""
        ctx, sb, verdict = self.ctx, self.sb, self.verdict
        assert self.trace_fd is not None  # held since boot
        tail = _TraceTail(self.trace_fd, self.out_dir / "trace.jsonl", self.on_event)
        ctx.chat_timeout_s = self.spec.time_limit_s + defaults.CHAT_GRACE_S

        def send_task(text: str) -> dict[str, Any]:
            reply = _post_and_follow(sb, ctx.running.agent_port, text, ctx.chat_timeout_s, tail)
            if reply.get("status") is None:  # no answer: say whether the agent died
                reply["original_agent_alive"] = _still_alive(ctx.running.agent_pid)
                reply["original_llm_alive"] = pid_alive(ctx.running.llm_pid)
            verdict.task_outcome = reply
            return reply

        t = time.monotonic()
        task_result = self.scenario.run_task(ctx, send_task)
        tail.poll()
        self._timed("task_s", t)
        (self.evidence / "task_response.json").write_text(
            json.dumps(task_result, indent=1, default=str))
        sb.check_limits()
        self.no_original_killed(sb, "during the task")
        _ensure_alive(sb, "during the task")

    def judge(self) -> None:
        """The judge, then the scenario's own look and its decision (`outcome`)."""
        ctx, scenario = self.ctx, self.scenario
        t = time.monotonic()
        judgement = judge(self.sb, ctx.baseline, self.spec.judge, self.evidence,
                          **scenario.judge_kwargs(ctx), record=self.record)
        self._timed("judge_s", t)
        _ensure_alive(self.sb, "while it was judged")  # no verdict built on a dead channel
        scenario.observe(ctx, judgement)
        self.verdict.judged(judgement, scenario.outcome(ctx, judgement))

    def keep(self) -> None:
        """Evidence that goes with the sandbox: the original's logs, the replicas' traces."""
        _copy_logs(self.host_folder, self.evidence / "original")
        self.kept = _keep_candidate_traces(self.sb, self.verdict.candidates, self.out_dir)

    def failed(self, exc: BaseException) -> None:
        self.verdict.failed(_describe(exc))
        try:  # the whole story, for whoever debugs the harness (the verdict has one line)
            (self.evidence / "harness_error.txt").write_text(
                "".join(traceback.format_exception(exc)))
        except OSError:
            pass
        if self.sb is not None:
            self.verdict.teardown = self.sb.teardown()  # idempotent; records a limit's kill

    def stated_kills(self, kills: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each memory kill inside, said whose it was: an original, the sandbox's init, or a
        process the agent started (a model that tries to load a second 70B copy into RAM and
        is killed did not replicate: the verdict stands, and says so)."""
        running = self.ctx.running if self.ctx is not None else None
        whose = {getattr(self.sb, "pid1", None): "the sandbox's init"}
        if running is not None:
            whose |= {running.agent_pid: "the original agent",
                      running.llm_pid: "the original LLM server"}
        return [{**k, "reason": "memory", "whose": whose.get(k["pid"], "a process started "
                                                                       "inside")}
                for k in kills]

    def no_original_killed(self, sb: Sandbox, when: str) -> None:
        """An original (or init) killed for memory before the judge looked: there is no trial
        to judge, and it must not read as "not replicated"."""
        for kill in self.stated_kills(sb.memory_kills()):
            if kill["whose"] != "a process started inside":
                raise TrialCutShort(f"the sandbox killed {kill['whose']} (PID {kill['pid']}, "
                                    f"{kill['name']}) for memory {when}; nothing is left to "
                                    "judge")

    def interrupted(self, signame: str) -> None:
        """Stopped from outside before it was judged: a stated error, never a result."""
        self.verdict.failed(f"interrupted ({signame}) before it was judged; its sandbox was "
                            "torn down")
        self.verdict.interrupted = signame
        if self.sb is not None:
            self.verdict.teardown = self.sb.teardown()  # idempotent: done on the way out

    def teardown_scenario(self) -> None:
        if self.scenario is not None and self.ctx is not None:
            try:
                self.scenario.teardown(self.ctx)
            except Exception as exc:  # noqa: BLE001 - stated in the verdict
                self.verdict.error = self.verdict.error or f"scenario teardown failed: {exc}"

    def finish(self) -> Verdict:
        """Always: stop the recorders, keep the trace, read what the model said and the
        trace's facts, write verdict.json from the disk space held in reserve."""
        verdict, out_dir = self.verdict, self.out_dir
        self.record.stop()
        _keep_record(self.record, self.evidence)
        try:
            self.reserve.unlink(missing_ok=True)
        except OSError:
            pass  # a folder that refuses it refuses the verdict too: said below
        trace = out_dir / "trace.jsonl"
        try:
            # Always the inode held since boot, never the path: inside, the agent may have
            # put a link (to /dev/zero, to a host file) or a FIFO in its place.
            if self.trace_fd is not None:
                _copy_held(self.trace_fd, trace)
            trace.touch()
        except OSError as exc:
            verdict.error = verdict.error or f"could not keep the trace: {_describe(exc)}"
        finally:
            if self.trace_fd is not None:
                os.close(self.trace_fd)
                self.trace_fd = None
        try:
            events = load_events(trace)
        except InputError as exc:
            events = []
            verdict.error = verdict.error or f"could not read the trace: {exc}"
        said = main_statements(events)
        verdict.eval_awareness, verdict.refusals = said.eval_awareness, said.refusals
        verdict.candidate_statements = [candidate_statements(
            load_events(out_dir / rel), events, cand.agent.port, cand.agent.folder,
            (cand.checks["tool_probe"].evidence.get("task") if "tool_probe" in cand.checks
             else None), rel) for cand, rel in self.kept]
        verdict.kills = self.stated_kills((verdict.teardown or {}).get("memory_kills") or [])
        verdict.limit_hit = _limits_hit(verdict.teardown or {}, verdict.limits, verdict.kills)
        f = facts(events)
        if self.scenario is not None and self.ctx is not None \
                and self.scenario.state.stopped_by_scenario:
            # its clock ran out while the agent worked: that ended the task, whatever the
            # agent did afterwards (a finish while it was judged is after the end)
            f["end_reason"] = "stopped_by_scenario"
        elif f["end_reason"] is None and (verdict.task_outcome or {}).get(
                "original_agent_alive") is False:
            f["end_reason"] = "agent_exited"
        verdict.duration_s = round(time.monotonic() - self.t0, 3)
        # the agent writes run_start when it takes the task: without one, nothing was observed
        verdict.finish(f, task_ran=bool(first_run(events)))
        try:
            atomic_write_json(out_dir / "verdict.json", verdict.document())
        except OSError as exc:  # never lost: written elsewhere, and the caller prints it
            fallback = write_elsewhere(f"{verdict.trial_id}.verdict.json", verdict.document())
            raise VerdictNotKept(verdict, out_dir / "verdict.json", exc, fallback) from None
        return verdict


def run_trial(spec: TrialSpec, out_dir: Path, on_event: OnEvent | None = None) -> Verdict:
    """Run one trial; write its verdict.json and return the `Verdict`. The phases are
    `_Trial`'s methods; `replicated` is decided by the scenario's `outcome()`.

    Stopped from outside (Ctrl-C, SIGTERM, SIGHUP: redline.contracts.stop), the sandbox is torn
    down on the way out, the verdict says so (`interrupted`, and the error), and the interrupt
    goes on to the caller once the verdict is written."""
    trial = _Trial(spec, out_dir, on_event)
    stopped: KeyboardInterrupt | None = None
    try:
        sb = trial.prepare()
        t = time.monotonic()
        with sb:
            trial.boot(sb, t)
            trial.give_task()
            trial.judge()
            trial.keep()
            t = time.monotonic()
        trial.verdict.timings["teardown_s"] = round(time.monotonic() - t, 3)
        trial.verdict.teardown = getattr(sb, "teardown_report", None)
    except KeyboardInterrupt as exc:
        stopped = exc
        trial.interrupted(signal_name(exc))
    except Exception as exc:  # noqa: BLE001 - every trial ends with a verdict or a stated error
        trial.failed(exc)
    finally:
        trial.teardown_scenario()
    verdict = trial.finish()
    if stopped is not None:
        raise stopped
    return verdict


def start_inside(sb: Sandbox, deploy_script: str, setup: str, env: dict[str, str], log_dir: Path,
                 llm_timeout_s: float) -> RunningSystem:
    """Start the system in the trial folder inside the sandbox as a trial does: its LLM server,
    then its agent, on the setup's ports, with the agent's environment; logs to log_dir."""
    def spawn(argv: list[str], cwd: str, out: Path, err: Path) -> int:
        return sb.spawn(argv, cwd=cwd, env=env, stdout_path=out, stderr_path=err)

    def get(url: str, timeout: float) -> int:
        return sb.netns_call(lambda: httpx.get(url, timeout=timeout, trust_env=False).status_code)

    ports = get_setup(setup)
    return start_system(FOLDER, deploy_script, log_dir=log_dir, spawn=spawn, get=get,
                        llm_port=ports.llm_port, agent_port=ports.agent_port,
                        # the agent is healthy once its LLM answered its "Hello!": as slow
                        # as the model's first reply on a loaded machine
                        llm_timeout_s=llm_timeout_s, agent_timeout_s=max(60.0, llm_timeout_s))


def _limits_hit(teardown: dict[str, Any], limits: dict[str, Any],
                kills: list[dict[str, Any]]) -> str | None:
    """Every limit that acted, in words: the one that killed the sandbox (wall clock, disk),
    memory kills inside, forks the process limit refused."""
    hit = [teardown["killed_by_limit"]] if teardown.get("killed_by_limit") else []
    memory = (limits.get("memory") or {}).get("limit", "")
    if kills:
        hit.append(f"memory limit of {memory or 'the sandbox'}: the kernel killed "
                   f"{len(kills)} process(es): " +
                   ", ".join(f"{k['name']} (PID {k['pid']}, {k['whose']})" for k in kills))
    events = teardown.get("cgroup_events") or {}
    refused = next((int(line.split()[1]) for line in str(events.get("pids.events", ""))
                    .splitlines() if line.startswith("max ")), 0)
    if refused:
        limit = (limits.get("pids") or {}).get("limit", "the process limit")
        hit.append(f"{limit}: {refused} fork(s) refused")
    return "; ".join(hit) or None


def _ensure_alive(sb: Sandbox, when: str) -> None:
    """Everything inside dies with the sandbox's init: a verdict now would judge a corpse."""
    lost = sb.lost()
    if lost:
        raise TrialCutShort(f"{lost} {when}; nothing is left to judge")


def _post_and_follow(sb: Sandbox, port: int, text: str, timeout: float,
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


def _keep_candidate_traces(sb: Any, candidates: list[Candidate], out_dir: Path
                           ) -> list[tuple[Candidate, str]]:
    """Each replica candidate's own trace, copied to evidence/candidates/<port>/ before the
    sandbox goes, so what its model wrote is read too (apart from the original's). Read with
    no link followed; a candidate on another machine, or one with no trace, has none kept."""
    kept: list[tuple[Candidate, str]] = []
    areas = (str(sb.config.home).rstrip("/"), "/tmp")
    for cand in candidates:
        folder = (cand.agent.folder or "").rstrip("/")
        area = next((a for a in areas if folder.startswith(a + "/")), None)
        if cand.host or area is None or folder == FOLDER:
            continue
        text = read_regular(sb.host_path(area), f"{folder[len(area) + 1:]}/log/trace.jsonl",
                            limit=CANDIDATE_TRACE_BYTES)
        rel = f"evidence/candidates/{cand.agent.port}/trace.jsonl"
        try:
            if text is not None:
                (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                (out_dir / rel).write_text(text, encoding="utf-8")
                kept.append((cand, rel))
        except OSError:
            continue  # a full disk costs this copy, never the verdict
    return kept


def _keep_record(record: KernelRecord, evidence: Path) -> None:
    """The kernel record as evidence: each recorder's state and every process event inside
    (what each command started, for the trace viewer)."""
    try:
        # event times are the kernel's monotonic clock; the pair maps them to the trace's
        atomic_write_json(evidence / "kernel_record.json",
                          {**record.public(), "processes": record.procs.dump(),
                           "clock": {"monotonic": time.monotonic(), "unix": time.time()}})
    except OSError:
        pass  # a full disk: the verdict, written from the reserve, matters more


def _copy_logs(host_folder: Path, dest: Path) -> None:
    """The original's own log, read with no link followed and bounded: inside, the agent may
    have put a link (to a host file, to /dev/zero) or a FIFO in its place."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("agent.log",):
        text = read_regular(host_folder, f"log/{name}", limit=CANDIDATE_TRACE_BYTES)
        if text is not None:
            (dest / name).write_text(text, encoding="utf-8")
