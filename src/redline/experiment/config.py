"""The experiment file: a grid of models x scenarios x trials, validated before anything starts.

A broken file must fail in the first second with a message naming the field, not after an hour of
trials. The grid expands to one `Job` per (model, scenario, index) with a trial id that is stable
across runs, because resuming finds finished trials by that id.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from redline import defaults
from redline.inputs import MAX_CONFIG_BYTES, InputError, load_toml, load_yaml, read_text
from redline.judge.config import JudgeConfig
from redline.sandbox.config import SandboxConfig
from redline.scenarios import SCENARIOS
from redline.system.engines import KINDS, EngineError, EngineOptions, parse_model
from redline.trial import Resources, TrialSpec
from redline.trial.sizing import size_trial
from redline.trial.spec import SafeName

_PATH_KINDS = tuple(KINDS.names())  # model specs that name a path
Protocol = Literal["text", "native", "constrained"]


class ExperimentError(ValueError):
    """An experiment file that cannot be run; the message says which field and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ModelEntry(_Strict):
    """One model of the grid; `name` is what trial ids and tables show."""

    model: str
    name: SafeName | None = None
    resources: Resources | None = None
    sampling: dict[str, Any] | None = None
    engine: EngineOptions = Field(default_factory=EngineOptions)  # how its server is run
    # this cell's setup (redline.system.setups); default: the experiment's. To compare the
    # two, list the model twice with names, e.g. {name = "qwen-guided", setup = "guided"}.
    setup: Literal["paper", "guided"] | None = None
    # how the agent and this model exchange actions (docs/protocols.md); default: the
    # experiment's. A list runs the model under each, as cells of their own ("NAME+PROTOCOL").
    protocol: Protocol | list[Protocol] | None = None

    @field_validator("protocol")
    @classmethod
    def _protocols_listed_once(cls, value: Any) -> Any:
        if isinstance(value, list) and (not value or len(set(value)) != len(value)):
            raise ValueError("list each protocol once, and at least one")
        return value

    def protocols(self, default: str) -> list[str]:
        if self.protocol is None:
            return [default]
        return self.protocol if isinstance(self.protocol, list) else [self.protocol]


# One experiment's trials at most: each is a folder and a row of the index, made when the grid
# is expanded (a grid of 10^6 made a 540 MB index before the first trial ran).
MAX_TRIALS = 100_000


class Limits(_Strict):
    max_steps: int = Field(defaults.MAX_STEPS, ge=1)
    time_limit_s: float = Field(defaults.TIME_LIMIT_S, gt=0)
    wait_window_s: float | None = Field(None, gt=0)
    command_timeout_s: float = Field(defaults.COMMAND_TIMEOUT_S, gt=0)


class RayOptions(_Strict):
    # None: RAY_ADDRESS if set, else a fresh local instance bound to 127.0.0.1
    address: str | None = None
    namespace: str | None = None
    # "auto": trials write straight into the output folder where a node sees it (shared
    # storage), else into a node-local folder that comes home through Ray; "no": always the
    # latter (redline.experiment.raybackend).
    shared_storage: Literal["auto", "no"] = "auto"
    # Files larger than this stay on the node (listed in left_on_node.json), e.g. weights
    # copied into a kept sandbox.
    bring_home_max_mb: float = Field(64, gt=0)
    # Custom Ray resources each trial also asks for, e.g. {"a100": 1} to land on such nodes.
    resources: dict[str, float] = Field(default_factory=dict)


class DryRun(_Strict):
    """Replace real trials by a sleep and a made-up verdict: checks plumbing, not models."""

    seconds: float = Field(0.5, ge=0)


class Experiment(_Strict):
    name: SafeName = "experiment"  # the results folder is runs/<name>
    models: list[ModelEntry] = Field(min_length=1)
    scenarios: list[str] = Field(min_length=1)
    setup: Literal["paper", "guided"] = "paper"
    protocol: Protocol = "text"  # the research default: the paper's free-text format
    trials: int = Field(1, ge=1)
    seed: int = 0
    limits: Limits = Field(default_factory=Limits)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    resources: Resources = Field(default_factory=Resources)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    # per scenario, e.g. [scenario_options.shutdown] grace_s = 120
    scenario_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    backend: Literal["local", "ray"] = "local"
    parallel: int | None = Field(None, ge=1)
    out: str | None = None
    ray: RayOptions = Field(default_factory=RayOptions)
    dry_run: DryRun | None = None

    @field_validator("models", mode="before")
    @classmethod
    def _models_as_entries(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"model": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _unique(self) -> Experiment:
        if self.size > MAX_TRIALS:
            raise ValueError(f"the grid has {self.size} trials ({self.trials} per cell); one "
                             f"experiment may have at most {MAX_TRIALS}: split it")
        names = [cell for m in self.models for cell, _p in cells(m, self.protocol)]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"two models share the name {dupes[0]!r}: give one a `name`")
        if len(set(self.scenarios)) != len(self.scenarios):
            raise ValueError("a scenario is listed twice")
        return self


    @property
    def size(self) -> int:
        """How many trials the grid has, counted without making them."""
        return self.trials * len(self.scenarios) * sum(
            len(m.protocols(self.protocol)) for m in self.models)


@dataclass(frozen=True)
class Job:
    """One trial of the grid."""

    trial_id: str
    model: str  # the model's name in this experiment
    scenario: str
    index: int
    spec: TrialSpec


def cells(entry: ModelEntry, default_protocol: str) -> list[tuple[str, str]]:
    """(cell name, protocol) for each protocol a model entry runs under: its name alone for
    one protocol, NAME+PROTOCOL for each of several, so trial ids and cells keep them apart."""
    protocols = entry.protocols(default_protocol)
    name = model_name(entry)
    if len(protocols) == 1:
        return [(name, protocols[0])]
    return [(f"{name}+{p}", p) for p in protocols]


def model_name(entry: ModelEntry) -> str:
    """Readable, filesystem-safe name: `KIND:controls/x.yaml` -> `x`."""
    if entry.name:
        raw = entry.name
    else:
        kind, sep, rest = entry.model.partition(":")
        raw = Path(rest.rstrip("/")).stem if sep and kind in _PATH_KINDS else entry.model
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", raw).strip("-.") or hashlib.sha1(
        entry.model.encode()).hexdigest()[:8]


def _resolve_model(model: str, base: Path) -> str:
    """Paths in an experiment file are relative to the file, falling back to the cwd."""
    kind, sep, rest = model.partition(":")
    if sep and kind in _PATH_KINDS and not Path(rest).expanduser().is_absolute():
        candidate = (base / rest).resolve()
        if candidate.exists():
            return f"{kind}:{candidate}"
    return model


def _format_errors(exc: ValidationError) -> list[str]:
    return [f"  {'.'.join(str(p) for p in err['loc']) or '(file)'}: "
            f"{err['msg'].removeprefix('Value error, ')}" for err in exc.errors()]


def _invalid(source: str, problems: list[str]) -> ExperimentError:
    """One problem: one line naming the file and the field; several: one line each."""
    if len(problems) == 1:
        return ExperimentError(f"{source}: {problems[0].strip()}")
    return ExperimentError(f"{source} is not a valid experiment:\n" + "\n".join(problems))


def parse_experiment(data: dict[str, Any], base: Path, source: str = "experiment",
                     check_models: bool = True) -> Experiment:
    """Validate a loaded experiment mapping; raise ExperimentError with every problem found.

    check_models=False is for callers that bring their own trial function (tests, benchmarks).
    """
    try:
        exp = Experiment.model_validate(data)
    except ValidationError as exc:
        raise _invalid(source, _format_errors(exc)) from None
    for entry in exp.models:
        entry.model = _resolve_model(entry.model, base)
    problems = _check_names(exp, check_models and exp.dry_run is None)
    if problems:
        raise _invalid(source, problems)
    return exp


def _check_names(exp: Experiment, check_models: bool) -> list[str]:
    """Scenarios, models and sandbox settings that exist, so no trial fails for a typo."""

    problems = [f"  scenarios: unknown scenario {s!r}; choose from {', '.join(SCENARIOS)}"
                for s in exp.scenarios if s not in SCENARIOS]
    if check_models:
        for i, entry in enumerate(exp.models):
            try:
                engine = parse_model(entry.model, entry.engine)
            except EngineError as exc:
                problems.append(f"  models.{i}.model: {exc}")
                continue
            for protocol in entry.protocols(exp.protocol):  # what the engine cannot serve
                try:
                    engine.protocol_plan(protocol)
                except EngineError as exc:
                    problems.append(f"  models.{i}.protocol: {exc}")
    for name, opts in exp.scenario_options.items():
        if name not in exp.scenarios:
            problems.append(f"  scenario_options.{name}: not a scenario of this experiment")
            continue
        try:
            TrialSpec(scenario=name, scenario_options=opts)
        except ValidationError as exc:
            problems += [f"  {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]
    return problems


def load_experiment(path: Path) -> Experiment:
    """Read a TOML (or YAML) experiment file."""
    path = Path(path)
    try:  # a regular file, bounded in size, depth and aliases (redline.inputs)
        text = read_text(path, MAX_CONFIG_BYTES, "experiment file")
        if path.suffix.lower() in (".yaml", ".yml"):
            data = load_yaml(text, str(path))
        else:
            data = load_toml(text, str(path))
    except InputError as exc:
        raise ExperimentError(str(exc)) from None
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ExperimentError(f"{path}: cannot parse: {exc}") from None
    if not isinstance(data, dict):
        raise ExperimentError(f"{path}: expected a table of settings at the top level")
    return parse_experiment(data, path.resolve().parent, str(path))


def _sized_resources(exp: Experiment, entry: ModelEntry, scenario: str) -> Resources:
    """What a trial reserves: as the file says, else what its engine needs for the original
    and the copies its scenario expects (trial/sizing.py: a GPU engine's CPUs and memory grow
    with its tensor parallelism; a CPU engine keeps the defaults, so its slots do not change).
    A model that cannot be read here (a dry run's) keeps the defaults."""
    if entry.resources is not None:
        return entry.resources
    if "resources" in exp.model_fields_set:
        return exp.resources
    try:
        engine = parse_model(entry.model, entry.engine)
    except EngineError:
        return exp.resources
    sizing = size_trial(TrialSpec(model=entry.model, scenario=scenario,
                                  time_limit_s=exp.limits.time_limit_s, judge=exp.judge),
                        engine, SCENARIOS[scenario]())
    return Resources(cpus=sizing.cpus, memory_mb=sizing.memory_mb, gpus=exp.resources.gpus,
                     replica_gpus=exp.resources.replica_gpus)


def expand(exp: Experiment) -> list[Job]:
    """Every trial of the grid, ordered index-major so early results cover every cell."""
    jobs = []
    sized = {(i, s): _sized_resources(exp, entry, s) for i, entry in enumerate(exp.models)
             for s in exp.scenarios}
    for index in range(exp.trials):
        for m, entry in enumerate(exp.models):
            for (name, protocol), scenario in product(cells(entry, exp.protocol),
                                                      exp.scenarios):
                trial_id = f"{name}--{scenario}--{index:03d}"
                spec = TrialSpec(
                    model=entry.model, scenario=scenario, setup=entry.setup or exp.setup,
                    protocol=protocol,
                    max_steps=exp.limits.max_steps,
                    time_limit_s=exp.limits.time_limit_s, seed=exp.seed + index,
                    wait_window_s=exp.limits.wait_window_s,
                    command_timeout_s=exp.limits.command_timeout_s, sampling=entry.sampling,
                    engine=entry.engine,
                    sandbox=exp.sandbox.model_dump(exclude_unset=True),
                    resources=sized[(m, scenario)], judge=exp.judge,
                    scenario_options=exp.scenario_options.get(scenario, {}),
                    trial_id=trial_id)
                jobs.append(Job(trial_id, name, scenario, index, spec))
    return jobs
