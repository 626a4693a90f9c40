"""What one trial needs, sized from its engine, its scenario and its settings (docs/gpu.md):
where its weights go, how much disk it may fill, how long it may take, and its sandbox's CPUs,
memory and processes.

- **Weights**: bigger than `MOUNT_WEIGHTS_BYTES`, bound read-only into the folder and never
  copied (what the agent copies counts against the disk); smaller, copied as before.
- **Disk** (a cap, not a reservation): today's 4096 MiB, plus room for the copies a scenario
  expects of weights that were not copied in, plus a tenth.
- **Clocks**: named budgets, each recorded in the verdict: `startup_s` (the engine's: its
  server up and its agent's "Hello!" answered), `task_s` (the agent's time limit, the grace of
  the task's answer, and the scenario's own clock), `judging_s` (every wait and probe of the
  judge at most). The sandbox's wall clock is their sum: a model that uses its whole task time
  is never killed while it is judged.
- **Resources**: per system (the original and each copy the scenario expects), the engine's
  own needs plus its tensor-parallel workers' on a GPU engine; on a CPU engine, today's
  defaults unless the weights it maps need more memory (the experiment runner's slots do not
  change for CPU trials).
Whatever the user gave (`--disk-mb`, resources, sandbox settings) wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from redline import defaults
from redline.judge.config import JudgeConfig
from redline.system.engines import Engine

if TYPE_CHECKING:
    from redline.scenarios import Scenario
    from redline.trial.spec import TrialSpec

MiB = 1 << 20
DISK_MARGIN = 1.1  # a tenth more than the copies' weights
JUDGE_SLACK_S = 60.0  # surveys, classification probes, teardown


class Budgets(BaseModel):
    """A trial's clocks, by name (verdict.json `budgets`)."""

    model_config = ConfigDict(extra="forbid")

    startup_s: float
    task_s: float
    judging_s: float
    wall_clock_s: float


@dataclass(frozen=True)
class Sizing:
    mount_weights: bool
    weights_bytes: int
    systems: int  # the original and the copies the scenario expects
    disk_mb: int
    cpus: float
    memory_mb: int
    pids: int
    budgets: Budgets


def judging_s(cfg: JudgeConfig) -> float:
    """The judge's waits and probes, at most: the load wait, the survival window, the
    original's tool task, and for each candidate it may greet two greetings, the fingerprint
    and its own tool task."""
    per_candidate = 2 * cfg.greet_timeout_s + cfg.fingerprint_timeout_s + \
        cfg.tool_probe_timeout_s
    return (cfg.settle_s + cfg.load_wait_s + cfg.survival_s + cfg.tool_probe_timeout_s
            + cfg.max_candidates * per_candidate + JUDGE_SLACK_S)


def size_trial(spec: TrialSpec, engine: Engine, scenario: Scenario) -> Sizing:
    info = engine.info
    systems = 1 + scenario.copies_expected
    weights = engine.weights_bytes
    mount = engine.mounts_weights
    weights_mb = math.ceil(weights / MiB)
    disk = defaults.DISK_MB + (math.ceil(weights_mb * scenario.copies_expected * DISK_MARGIN)
                               if mount else 0)
    tp = engine.tensor_parallel if info.gpu else 0
    if info.gpu:
        cpus = systems * (info.cpus + tp * info.worker_cpus)
        memory = systems * (info.memory_mb + tp * info.worker_memory_mb)
        pids = systems * (info.pids + tp * info.worker_pids)
    else:  # a CPU engine maps its weights into memory
        cpus, pids = defaults.CPUS, defaults.PIDS_MAX
        memory = max(defaults.MEMORY_MB, systems * (weights_mb + info.memory_mb))
    startup = engine.startup_s
    task = spec.time_limit_s + defaults.CHAT_GRACE_S + scenario.clock_s(spec)
    judge = judging_s(spec.judge)
    return Sizing(mount, weights, systems, disk, float(cpus), int(memory), int(pids),
                  Budgets(startup_s=startup, task_s=task, judging_s=round(judge, 1),
                          wall_clock_s=round(startup + task + judge, 1)))
