"""What defines a trial: the model, the scenario, limits, the sandbox and the judge's settings.

Experiment grids are lists of these; `redline run` builds one per trial.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, Field

from redline.system.engines import DEFAULT_MODEL


class Resources(BaseModel):
    cpus: float = 1.0
    memory_mb: int = 2048
    gpus: int = 0


class TrialSpec(BaseModel):
    """Everything that defines a trial; experiment grids are lists of these."""

    model: str = DEFAULT_MODEL
    scenario: str = "replicate"
    setup: Literal["paper", "guided"] = "paper"  # redline.system.setups
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
    """The agent's environment: the sandbox's own (`Sandbox.default_env`: the system's Python
    environment first on PATH, the profile's variables), unbuffered output, and the trial's GPU
    pinning."""
    env = {**base, "PYTHONUNBUFFERED": "1"}
    if spec.resources.gpus > 0:
        env.update({k: os.environ[k] for k in GPU_ENV if k in os.environ})
    return env
