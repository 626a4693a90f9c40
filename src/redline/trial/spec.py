"""What defines a trial: the model, the scenario, limits, the sandbox and the judge's settings.

Experiment grids are lists of these; `redline run` builds one per trial.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    model_validator,
)

from redline import defaults
from redline.contracts.verdict import Verdict
from redline.judge.config import JudgeConfig
from redline.sandbox.config import SandboxConfig
from redline.scenarios import SCENARIOS
from redline.system.engines import DEFAULT_MODEL, EngineOptions

if TYPE_CHECKING:  # sizing reads a spec: a type only here
    from redline.trial.sizing import Sizing


def check_name(value: str) -> str:
    """A name that becomes a folder (trial ids, experiment and model names) stays one folder
    inside its parent: not empty, printable, no `/` or `\\`, no `..`, at most 200 characters."""
    if not value:
        raise ValueError("must not be empty")
    if not value.isprintable():
        raise ValueError(f"{value!r} holds a character that is not printable")
    if "/" in value or "\\" in value:
        raise ValueError(f"{value!r} holds a '/' or '\\': a name, not a path")
    if ".." in value or value == ".":
        raise ValueError(f"{value!r} holds '..' or is '.': a name, not a path")
    if len(value) > 200:
        raise ValueError(f"{value[:20]!r}... is longer than 200 characters")
    return value


# A name a folder is made of; checked wherever one enters (TrialSpec, experiment files).
SafeName = Annotated[str, AfterValidator(check_name)]


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    cpus: float = defaults.CPUS
    memory_mb: int = defaults.MEMORY_MB
    # GPUs per system: the original's, and its engine's tensor parallelism (trial/gpuplan.py)
    gpus: int = Field(0, ge=0)
    # GPUs for each copy the scenario expects (None: as many as the original; 0: the copies
    # share the original's)
    replica_gpus: int | None = Field(None, ge=0)

    def total_gpus(self, copies: int) -> int:
        """What a trial with `copies` expected copies reserves."""
        if not self.gpus:
            return 0
        return self.gpus + (self.gpus if self.replica_gpus is None else self.replica_gpus) \
            * copies


class TrialSpec(BaseModel):
    """Everything that defines a trial; experiment grids are lists of these. Unknown keys
    anywhere in it are errors that name the key."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str = DEFAULT_MODEL
    scenario: str = "replicate"
    setup: Literal["paper", "guided"] = "paper"  # redline.system.setups
    # how the agent and its LLM exchange actions (docs/protocols.md); text is the paper's
    protocol: Literal["text", "native", "constrained"] = "text"
    max_steps: int = Field(defaults.MAX_STEPS, ge=1)
    time_limit_s: float = Field(defaults.TIME_LIMIT_S, gt=0)
    seed: int = 0
    # long_running wait; None: the engine's (25 s for a real model)
    wait_window_s: float | None = Field(None, gt=0)
    command_timeout_s: float = Field(defaults.COMMAND_TIMEOUT_S, gt=0)
    sampling: dict[str, Any] | None = None
    engine: EngineOptions = Field(default_factory=EngineOptions)  # how its server is run
    # Only the settings given here override a trial's sandbox (see sandbox_settings).
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    resources: Resources = Field(default_factory=Resources)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    scenario_options: dict[str, Any] = Field(default_factory=dict)  # the scenario's Options
    trial_id: SafeName | None = None

    @field_serializer("sandbox")
    def _sandbox_as_given(self, value: SandboxConfig) -> dict[str, Any]:
        """Only what was given: a dumped and reloaded spec overrides the same settings."""
        return value.model_dump(mode="json", exclude_unset=True)

    @model_validator(mode="after")
    def _scenario_options_fit(self) -> TrialSpec:
        """A scenario's options are checked against its own model (unknown keys named)."""
        if self.scenario in SCENARIOS:
            scenario = SCENARIOS[self.scenario]()
            try:
                scenario.options(self)
            except ValidationError as exc:
                known = ", ".join(scenario.Options.model_fields) or "none"
                bad = "; ".join(f"scenario_options.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                for e in exc.errors())
                raise ValueError(f"{bad} (scenario {self.scenario} takes: {known})") from None
        return self

    def gpus_reserved(self) -> int:
        """The GPUs this trial holds: the original's, and each expected copy's."""
        return self.resources.total_gpus(SCENARIOS[self.scenario].copies_expected) \
            if self.scenario in SCENARIOS else self.resources.gpus

    def verdict(self, trial_id: str, **fields: Any) -> Verdict:
        """The head of this trial's verdict, built here only: the run, the runner's error
        verdict and the dry run all say what ran the same way."""
        return Verdict(trial_id=trial_id, scenario=self.scenario, model=self.model,
                       seed=self.seed, setup=self.setup, protocol=self.protocol,
                       spec=self.model_dump(mode="json"), **fields)


def sandbox_settings(spec: TrialSpec, sizing: Sizing | None = None) -> dict[str, Any]:
    """The sandbox for a trial. Resources given explicitly (every experiment trial, or
    `redline run --cpus/--memory-mb/--gpus`) are what the trial reserves, so they are also its
    sandbox's CPU and memory limits, and GPUs turn on pass-through; otherwise its sizing (from
    the engine and the scenario: trial/sizing.py) gives them, with its disk cap, its processes
    and its wall clock, the sum of its budgets. `sandbox` settings win."""
    settings: dict[str, Any] = {"wall_clock_s": spec.time_limit_s + defaults.WALL_CLOCK_GRACE_S}
    if sizing is not None:
        settings.update(wall_clock_s=sizing.budgets.wall_clock_s, disk_mb=sizing.disk_mb,
                        pids_max=sizing.pids, cpus=sizing.cpus, memory_mb=sizing.memory_mb)
    if "resources" in spec.model_fields_set:
        settings.update(cpus=spec.resources.cpus, memory_mb=spec.resources.memory_mb)
    return {**settings, **spec.sandbox.model_dump(exclude_unset=True)}


def trial_env(spec: TrialSpec, base: dict[str, str],
              gpu_env: dict[str, str] | None = None) -> dict[str, str]:
    """The agent's environment: the sandbox's own (`Sandbox.default_env`: the system's Python
    environment first on PATH, the profile's variables), unbuffered output, and the trial's
    GPUs as CUDA inside counts them (trial/gpuplan.py: renumbered from 0, never the host's
    numbers)."""
    return {**base, "PYTHONUNBUFFERED": "1", **(gpu_env or {})}
