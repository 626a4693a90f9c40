"""Run an experiment's grid on this machine (a process pool) or on a Ray cluster, resumably.

Trials run in long-lived workers (one process per slot, or a Ray worker) because a sandbox dies
with the thread that started it (PR_SET_PDEATHSIG): a worker that lives for the whole grid keeps
its sandboxes alive exactly as long as the trial needs them. Workers in turn die with the runner,
so a killed runner never leaves trials writing behind the back of the next run.

The Ray backend (a cluster, results brought home, the node in each verdict) is its own module,
redline.experiment.raybackend; the resume, slot and GPU-pinning logic here serves both.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console

from redline.contracts.registry import Registry
from redline.contracts.stop import stop_on_signals_for_good
from redline.contracts.verdict import Verdict
from redline.experiment.config import Experiment, Job, expand
from redline.experiment.dryrun import dry_run_trial
from redline.experiment.raybackend import BackendError, RayBackend, check_reachable
from redline.experiment.store import INDEX, Store, SyncReport
from redline.experiment.worker import TrialFn, error_verdict, execute_trial
from redline.sandbox.gpus import inventory
from redline.trial import TrialSpec, run_trial

MiB = 1024 * 1024
MAX_ATTEMPTS = 3  # a trial whose worker dies this often is recorded as an error
# worker deaths (not the trial's own verdict): the trial is queued again
_INFRA_ERRORS = {"BrokenProcessPool", "WorkerCrashedError", "NodeDiedError", "OutOfMemoryError",
                 "LocalRayletDiedError", "ObjectLostError", "RaySystemError", "ActorDiedError",
                 "OwnerDiedError", "TaskUnschedulableError"}


# ---------------------------------------------------------------- resources


@dataclass
class Capacity:
    """What is free to hand out: a trial starts only when its resources fit."""

    cpus: float
    memory_mb: int
    gpus: list[str] = field(default_factory=list)  # by index or UUID, as CUDA takes them

    def need(self, spec: TrialSpec) -> tuple[float, int, int]:
        # a trial bigger than the machine still runs, alone
        r = spec.resources
        return (min(r.cpus, self.total_cpus), min(r.memory_mb, self.total_memory_mb),
                spec.gpus_reserved())

    def __post_init__(self) -> None:
        self.total_cpus, self.total_memory_mb = self.cpus, self.memory_mb

    def fits(self, spec: TrialSpec) -> bool:
        cpus, mem, gpus = self.need(spec)
        return cpus <= self.cpus + 1e-9 and mem <= self.memory_mb and gpus <= len(self.gpus)

    def take(self, spec: TrialSpec) -> list[str]:
        cpus, mem, gpus = self.need(spec)
        self.cpus -= cpus
        self.memory_mb -= mem
        taken, self.gpus = self.gpus[:gpus], self.gpus[gpus:]
        return taken

    def give(self, spec: TrialSpec, gpu_ids: list[str]) -> None:
        cpus, mem, _ = self.need(spec)
        self.cpus += cpus
        self.memory_mb += mem
        self.gpus = sorted(self.gpus + gpu_ids, key=lambda g: (not g.isdigit(), len(g), g))


def local_gpus() -> list[str]:
    """GPU ids this process may use, as CUDA takes them (an index or a UUID): those
    CUDA_VISIBLE_DEVICES names, else every GPU the inventory lists (sandbox/gpus.py)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [x.strip() for x in visible.split(",") if x.strip()]
    return [str(g.index) for g in inventory().gpus]


def machine_capacity() -> Capacity:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else psutil.cpu_count()
    return Capacity(float(cpus or 1), psutil.virtual_memory().available // MiB, local_gpus())


def local_slots(jobs: list[Job], cap: Capacity, parallel: int | None) -> int:
    """How many trials can run at once: the machine divided by the smallest trial's needs."""
    if not jobs:
        return 1
    bounds = []
    for job in jobs:
        cpus, mem, gpus = cap.need(job.spec)
        b = min(int(cap.total_cpus / cpus) if cpus > 0 else len(jobs),
                int(cap.total_memory_mb / mem) if mem > 0 else len(jobs),
                len(cap.gpus) // gpus if gpus else len(jobs))
        bounds.append(b)
    slots = max(1, *bounds)
    return max(1, min(slots, parallel or slots, len(jobs)))


# ---------------------------------------------------------------- the worker side


def _die_with_parent(parent_pid: int) -> None:
    """Pool initializer: SIGKILL this worker (and so its sandboxes) when the runner dies; a
    SIGTERM the runner passes on stops its trial as Ctrl-C does (a stated verdict, the sandbox
    torn down)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    if os.getppid() != parent_pid:  # the runner died before prctl took effect
        os._exit(1)
    stop_on_signals_for_good()


# ---------------------------------------------------------------- backends


class LocalBackend:
    """One long-lived single-process pool per slot (spawned, so no inherited threads or locks).

    A pool per slot rather than one shared pool: a worker that dies (OOM kill, segfault) then
    breaks only its own trial, which is queued again, instead of every trial in flight.
    """

    name = "local"

    def __init__(self, slots: int, trial_fn: TrialFn) -> None:
        self.trial_fn = trial_fn
        self.has_gpus = bool(local_gpus())
        self.pools = [self._pool() for _ in range(slots)]
        self.free = list(range(slots))
        self.slot_of: dict[Future[Any], int] = {}

    @staticmethod
    def _pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"),
                                   initializer=_die_with_parent, initargs=(os.getpid(),))

    def submit(self, job: Job, out_dir: Path, gpu_ids: list[str] | None) -> Future[Any]:
        slot = self.free.pop()
        # always set (empty for CPU trials) so a worker never keeps an earlier trial's GPUs
        fut = self.pools[slot].submit(execute_trial, self.trial_fn, job.spec, str(out_dir),
                                      gpu_ids if self.has_gpus else None)
        self.slot_of[fut] = slot
        return fut

    def done(self, fut: Future[Any], broken: bool) -> None:
        slot = self.slot_of.pop(fut)
        if broken:
            self.pools[slot].shutdown(wait=False, cancel_futures=True)
            self.pools[slot] = self._pool()
        self.free.append(slot)

    def cancel(self) -> None:
        """Stopped: queued trials are dropped, running ones are stopped as the runner was (each
        worker gets SIGTERM: its trial writes a stated verdict and tears its sandbox down),
        then the workers are waited for."""
        for pool in self.pools:
            pool.shutdown(wait=False, cancel_futures=True)
        for child in psutil.Process().children():  # our own pool workers, by PID
            try:
                if any("spawn_main" in arg for arg in child.cmdline()):
                    child.send_signal(signal.SIGTERM)
            except psutil.Error:
                continue
        for pool in self.pools:
            pool.shutdown(wait=True)

    def close(self) -> None:
        for pool in self.pools:
            pool.shutdown(wait=True)


# ---------------------------------------------------------------- the grid


class Listener:
    """Progress hooks; the CLI draws a live table from them, tests ignore them."""

    def begin(self, jobs: list[Job], statuses: dict[str, str], slots: int,
              verdicts: dict[str, Verdict]) -> None: ...
    def started(self, job: Job) -> None: ...
    def finished(self, job: Job, verdict: Verdict, status: str) -> None: ...
    def requeued(self, job: Job, reason: str) -> None: ...


@dataclass
class RunResult:
    out_dir: Path
    sync: SyncReport
    ran: int = 0
    statuses: dict[str, str] = field(default_factory=dict)
    slots: int = 0
    wall_s: float = 0.0

    @property
    def errors(self) -> int:
        return sum(s == "error" for s in self.statuses.values())

    @property
    def complete(self) -> bool:
        return all(s in ("done", "error") for s in self.statuses.values())


Backend = LocalBackend | RayBackend
# What a backend's start gives: the backend, how many trials it keeps in flight, and the
# machine's free resources where the runner hands them out itself (local), else None.
Started = tuple[Backend, int, Capacity | None]


def _check_local_gpus(jobs: list[Job], gpus: list[str]) -> None:
    """Every trial's GPUs exist on this machine, or BackendError names the first that lacks."""
    short = [j for j in jobs if j.spec.gpus_reserved() > len(gpus)]
    if short:
        raise BackendError(f"trial {short[0].trial_id} needs {short[0].spec.gpus_reserved()}"
                           f" GPUs; this machine has {len(gpus)} (use --backend ray)")


def _start_local(exp: Experiment, out_dir: Path, todo: list[Job], trial_fn: TrialFn,
                 parallel: int | None, ray_address: str | None) -> Started:
    cap = machine_capacity()
    _check_local_gpus(todo, cap.gpus)
    slots = local_slots(todo, cap, parallel)
    return LocalBackend(slots, trial_fn), slots, cap


def _start_ray(exp: Experiment, out_dir: Path, todo: list[Job], trial_fn: TrialFn,
               parallel: int | None, ray_address: str | None) -> Started:
    runner = RayBackend(trial_fn, ray_address or exp.ray.address, exp.ray.namespace, out_dir,
                        shared_storage=exp.ray.shared_storage, custom_resources=exp.ray.resources,
                        bring_home_max_mb=exp.ray.bring_home_max_mb)
    return runner, runner.slots(todo, parallel), None


# The experiment backends by the names `Experiment.backend` takes (the one registry pattern).
BACKENDS: Registry[Callable[..., Started]] = Registry(
    "experiment backend", [("local", _start_local), ("ray", _start_ray)])


def default_trial_fn(exp: Experiment) -> TrialFn:
    if exp.dry_run is not None:
        return functools.partial(dry_run_trial, seconds=exp.dry_run.seconds)
    return run_trial


def run_experiment(exp: Experiment, out_dir: Path, *, backend: str | None = None,
                   parallel: int | None = None, trial_fn: TrialFn | None = None,
                   retry_errors: bool = False, ray_address: str | None = None,
                   listener: Listener | None = None,
                   console: Console | None = None) -> RunResult:
    """Run every trial of the grid that has no verdict yet; safe to call again after a crash."""
    t0 = time.monotonic()
    backend = backend or exp.backend
    listener = listener or Listener()
    trial_fn = trial_fn or default_trial_fn(exp)
    jobs = expand(exp)
    if backend == "local" and not (Path(out_dir) / INDEX).exists():
        _check_local_gpus(jobs, local_gpus())  # a fresh folder: refused before it is made
    if backend == "ray":
        check_reachable(ray_address or exp.ray.address)  # before the folder is made
    with Store(out_dir) as store:
        sync = store.sync(jobs, retry_errors=retry_errors)
        store.set_meta("experiment", exp.model_dump(mode="json"))
        result = RunResult(Path(out_dir), sync)
        if console and sync.changed:
            console.print(f"[yellow]warning:[/] {len(sync.changed)} finished trials were run with "
                          "other settings; their verdicts are kept (use another --out to redo)")
        statuses = store.statuses()
        todo = [j for j in jobs if statuses[j.trial_id] == "pending"]
        if not todo:  # nothing left: do not start workers or a Ray instance
            result.statuses = statuses
            listener.begin(jobs, statuses, 0, store.verdicts())
            result.wall_s = time.monotonic() - t0
            return result
        runner, slots, capacity = BACKENDS.get(backend)(
            exp, Path(out_dir), todo, trial_fn, parallel or exp.parallel, ray_address)
        result.slots = slots
        listener.begin(jobs, statuses, slots, store.verdicts())
        try:
            result.ran = _drive(store, todo, runner, slots, capacity, listener)
        except BaseException:
            runner.cancel()
            raise
        else:
            runner.close()
        finally:
            result.statuses = store.statuses()
            result.wall_s = time.monotonic() - t0
    return result


def _drive(store: Store, todo: list[Job], runner: Backend, slots: int,
           capacity: Capacity | None, listener: Listener) -> int:
    """Keep `slots` trials in flight (as resources allow); record each verdict as it lands."""
    pending = list(todo)
    inflight: dict[Future[Any], tuple[Job, list[str]]] = {}
    ran = 0
    while pending or inflight:
        while pending and len(inflight) < slots:
            job = next((j for j in pending if capacity is None
                        or capacity.fits(j.spec)), None)
            if job is None:
                break
            pending.remove(job)
            gpu_ids = capacity.take(job.spec) if capacity else []
            store.mark_running(job.trial_id)
            inflight[runner.submit(job, store.folder(job.trial_id), gpu_ids)] = (job, gpu_ids)
            listener.started(job)
        done, _ = wait(list(inflight), timeout=1.0, return_when=FIRST_COMPLETED)
        for fut in done:
            job, gpu_ids = inflight.pop(fut)
            if capacity:
                capacity.give(job.spec, gpu_ids)
            try:
                verdict = fut.result()
            except Exception as exc:  # noqa: BLE001
                names = {c.__name__ for c in type(exc).__mro__}
                runner.done(fut, broken="BrokenProcessPool" in names)
                if names & _INFRA_ERRORS and store.attempts(job.trial_id) < MAX_ATTEMPTS:
                    store.mark_pending(job.trial_id)
                    pending.insert(0, job)
                    listener.requeued(job, f"{type(exc).__name__}: {exc}")
                    continue
                verdict = error_verdict(job.spec, job.trial_id,
                                        f"harness: {type(exc).__name__}: {exc}")
            else:
                runner.done(fut, broken=False)
            status = store.record(job.trial_id, verdict)
            ran += 1
            listener.finished(job, verdict, status)
    return ran
