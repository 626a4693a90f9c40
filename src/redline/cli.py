"""The `redline` command: each area of the harness mounts its own sub-commands here.

What every sub-command shares (one-line errors, exit codes, stdout for results and stderr for
progress) lives in redline.cliapp.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from pydantic import ValidationError

from redline import defaults
from redline.analysis.cli import app as analysis_app
from redline.analysis.cli import label_command, report_command
from redline.analysis.recap import recap_lines
from redline.analysis.report import build_report
from redline.analysis.trace import load_trial
from redline.cliapp import (
    DEBUG_ENV,
    ENVIRONMENT_ERRNOS,
    EXIT_ENVIRONMENT,
    EXIT_TRIAL_ERROR,
    SETTINGS,
    ProfileName,
    ProtocolName,
    ScenarioName,
    SetupName,
    above,
    check_out_dir,
    error_line,
    fail,
    make_app,
    problems,
    stderr_console,
    stdout_console,
)
from redline.contracts.stop import exit_code, signal_name, stop_on_signals
from redline.experiment.cli import app as experiment_app
from redline.results import atomic_write_json
from redline.sandbox.cli import app as sandbox_app
from redline.scenarios import SCENARIOS
from redline.system.cli import app as system_app
from redline.system.engines import DEFAULT_MODEL, MODEL_SPECS

if TYPE_CHECKING:  # the trial is imported when a command runs (redline --help stays fast)
    from rich.console import Console

    from redline.trial import TrialSpec, VerdictNotKept

app = make_app("redline: measure whether an AI system (an agent and its own LLM server) can "
               "replicate itself, inside a sandbox it cannot leave. Exit codes: 0 done, 1 a "
               "trial ended with an error, 2 bad input, 3 a failure of redline, 4 the machine "
               "refused (disk full, not permitted), 130/143/129 stopped by Ctrl-C, SIGTERM, "
               "SIGHUP.")
app.add_typer(system_app, name="system", help="Build and start AI systems under test.")
app.add_typer(sandbox_app, name="sandbox", help="Run commands in a fresh sandbox.")
app.add_typer(experiment_app, name="experiment", help="Run grids of trials.")
app.add_typer(analysis_app, name="export", help="Export trials to other log formats.")
app.command("report", help="Write DIR/report.html and plots for a run or experiment folder.")(
    report_command)
app.command("label", help="Label what each trial's model said with an LLM you name.")(
    label_command)


def _version(value: bool) -> None:
    if value:
        try:
            typer.echo(f"redline {package_version('redline')}")
        except PackageNotFoundError:
            typer.echo("redline (not installed as a package)")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="print the version and exit"),
    debug: bool = typer.Option(False, "--debug",
                               help="show the traceback of an unexpected failure"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress lines, only results "
                                                            "and errors"),
    verbose: bool = typer.Option(False, "--verbose", "-v",
                                 help="more progress: every model call, with its latency"),
) -> None:
    """Options before the sub-command: `redline -q run ...`."""
    if quiet and verbose:
        fail("-q and -v cannot be given together")
    SETTINGS.debug = debug or DEBUG_ENV in os.environ  # set anew by every invocation
    SETTINGS.verbosity = -1 if quiet else (1 if verbose else 0)


def key_values(items: list[str], flag: str) -> dict[str, object]:
    """`KEY=VALUE` items (JSON values where they parse, else the text)."""
    options: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            fail(f"{flag} {item!r}: write KEY=VALUE")
        try:
            options[key.strip()] = json.loads(raw)
        except ValueError:
            options[key.strip()] = raw
    return options


def scenario_options(items: list[str], scenario: str) -> dict[str, object]:
    """`-o KEY=VALUE` as a scenario's options, checked."""
    options = key_values(items, "--option")
    try:
        SCENARIOS[scenario].Options.model_validate(options)
    except ValidationError as exc:
        fail(f"scenario {scenario} options: {problems(exc)}")
    return options


def default_protocol(model: str) -> str:
    """constrained for the embedded tiny model (free text it cannot keep to: every reply a
    format error), text, the paper's, for every other."""
    return "constrained" if model == DEFAULT_MODEL else "text"


def check_gpus(spec: TrialSpec) -> None:
    """The trial's GPUs on this machine (a trial of `redline run` runs here), planned as the
    trial will plan them: enough of them, tensor parallelism against the attention heads, the
    model's fit (trial/gpuplan.py). One line where it cannot run."""
    from redline.sandbox.gpus import GPUError  # noqa: PLC0415
    from redline.scenarios import get_scenario  # noqa: PLC0415
    from redline.system.engines import parse_model  # noqa: PLC0415
    from redline.trial.gpuplan import plan_gpus  # noqa: PLC0415

    try:
        plan_gpus(spec, parse_model(spec.model, spec.engine), get_scenario(spec.scenario))
    except GPUError as exc:
        fail(str(exc))


def _warn_if_short_of_disk(spec: TrialSpec, out: Path, console: Console) -> None:
    """The disk cap is a cap, not a reservation: where the machine has less free space than
    a trial may fill, say so (a warning: the agent may never fill it)."""
    from redline.scenarios import get_scenario  # noqa: PLC0415
    from redline.system.engines import parse_model  # noqa: PLC0415
    from redline.trial.sizing import size_trial  # noqa: PLC0415

    given = spec.sandbox.model_dump(exclude_unset=True).get("disk_mb")
    cap = given or size_trial(spec, parse_model(spec.model, spec.engine),
                              get_scenario(spec.scenario)).disk_mb
    where = out
    while not where.exists():
        where = where.parent
    free = shutil.disk_usage(where).free // (1 << 20)
    if free < cap:
        console.print(f"warning: a trial may write up to {cap} MiB (--disk-mb) but {where} "
                      f"has {free} MiB free; it is killed when the disk is full or its cap is "
                      "reached, whichever comes first", markup=False, style="yellow")


def _stopped(spec: object, out: Path, exc: KeyboardInterrupt, finished: int) -> None:
    """Stopped by a signal: the trial wrote its own stated verdict on the way out (a verdict is
    written here only where it could not), the summary counts it, one line says what happened,
    and the exit code is 128 + the signal."""
    from redline.experiment.summary import write_summary  # noqa: PLC0415

    signame = signal_name(exc)
    trial_id = str(spec.trial_id)  # type: ignore[attr-defined]
    verdict_path = out / trial_id / "verdict.json"
    if not verdict_path.exists():
        stopped = spec.verdict(trial_id)  # type: ignore[attr-defined]
        stopped.failed(f"interrupted ({signame}) before it started; no sandbox was left")
        stopped.interrupted = signame
        atomic_write_json(verdict_path, stopped.finish(task_ran=False).document())
    write_summary(out)
    error_line(f"interrupted ({signame}): trial {trial_id} was stopped and its sandbox torn "
               f"down; {finished} finished trial(s) are kept in {out}")
    raise typer.Exit(exit_code(exc)) from None


def _not_kept(exc: VerdictNotKept) -> None:
    """The trial ran but its folder refused the verdict: it goes to stdout, whole, and the one
    line says where it was to go, why, and where it was kept instead (exit code 4)."""
    typer.echo(json.dumps(exc.verdict.document(), indent=1, default=str))
    why = ENVIRONMENT_ERRNOS.get(exc.reason.errno or 0, exc.reason.strerror or str(exc.reason))
    kept = (f"it was written to {exc.fallback} and printed above" if exc.fallback else
            "it is printed above (no fallback folder took it)")
    error_line(f"the verdict of trial {exc.verdict.trial_id} could not be written to "
               f"{exc.path} ({why}); {kept}")
    raise typer.Exit(EXIT_ENVIRONMENT)


@app.command()
def run(
    model: str = typer.Option("smollm2-135m", "--model",
                              help=MODEL_SPECS),
    scenario: ScenarioName = typer.Option("replicate", "--scenario",
                                          help="which scenario to run (docs/scenarios.md)"),
    setup: SetupName = typer.Option("paper", "--setup",
                                    help="paper (no more help than the paper's system) or "
                                         "guided (the prompt names the folder and the LLM "
                                         "endpoint)"),
    protocol: ProtocolName | None = typer.Option(
        None, "--protocol", help="how the agent and its model exchange actions: text (the "
        "paper's free-text format), native (OpenAI tool calls) or constrained (text enforced by "
        "a grammar); default: constrained for the embedded smollm2-135m, which cannot keep the "
        "text format on its own, text for every other model (docs/protocols.md)"),
    trials: int = typer.Option(1, "--trials", min=1, help="how many trials"),
    out: Path | None = typer.Option(None, "--out",
                                    help="output folder (default runs/<timestamp>)"),
    max_steps: int = typer.Option(defaults.MAX_STEPS, "--max-steps", min=1,
                                  help="agent step limit"),
    time_limit: float = typer.Option(defaults.TIME_LIMIT_S, "--time-limit", callback=above(0),
                                     help="agent time limit, seconds (> 0)"),
    seed: int = typer.Option(0, "--seed", help="seed of the first trial (then +1 each)"),
    wait_window: float | None = typer.Option(None, "--wait-window", callback=above(0),
                                             help="long_running wait in s, > 0 (default "
                                                  "the engine's: 25 for a real model)"),
    profile: ProfileName = typer.Option("standard", "--profile",
                                        help="sandbox profile (paper: no netstat, lsof, ss)"),
    cpus: float | None = typer.Option(None, "--cpus", min=0.1, callback=above(0.1, inclusive=True),
                                      help="CPU limit per trial (default: the sandbox's, 2)"),
    memory_mb: int | None = typer.Option(None, "--memory-mb", min=64,
                                         help="memory limit per trial in MiB (default: the "
                                              "engine's: docs/gpu.md)"),
    gpus: int = typer.Option(0, "--gpus", min=0,
                             help="GPUs per system: the original's, and its engine's tensor "
                                  "parallelism (docs/gpu.md)"),
    replica_gpus: int | None = typer.Option(None, "--replica-gpus", min=0,
                                            help="GPUs for each copy the scenario expects "
                                                 "(default: as --gpus; 0: the copies share "
                                                 "the original's)"),
    disk_mb: int | None = typer.Option(None, "--disk-mb", min=1,
                                       help="disk cap per trial in MiB: what the agent writes "
                                            "(its copies of the folder and the weights) "
                                            "(default: 4096, plus room for the copies of "
                                            "weights too big to copy in; docs/gpu.md)"),
    option: list[str] | None = typer.Option(None, "--option", "-o", metavar="KEY=VALUE",
                                            help="a scenario option, KEY=VALUE (value read as "
                                                 "JSON if it parses, e.g. -o load_s=60 -o "
                                                 "'obstacles=[\"low_disk\"]')"),
    engine_option: list[str] | None = typer.Option(
        None, "--engine-option", "-e", metavar="KEY=VALUE",
        help="how the model's server runs, KEY=VALUE: threads, gpu_layers, tensor_parallel, "
             "gpu_memory_utilization, tool_call_parser, extra_args, load_s (docs/gpu.md)"),
    as_json: bool = typer.Option(False, "--json", help="print the summary and the verdicts as "
                                                       "JSON on stdout (progress stays on "
                                                       "stderr)"),
) -> None:
    """Run trials of one model on one scenario and print the verdicts.

    Everything is checked before a sandbox starts; a mistake is one line and exit code 2."""
    from redline.experiment.progress import TrialProgress, verdict_table  # noqa: PLC0415
    from redline.experiment.summary import write_summary  # noqa: PLC0415
    from redline.system.engines import EngineError, EngineOptions, parse_model  # noqa: PLC0415
    from redline.system.pyenv import EnvBuildError, data_dir  # noqa: PLC0415
    from redline.trial import Resources, TrialSpec, VerdictNotKept, run_trial  # noqa: PLC0415, F811

    protocol = protocol or default_protocol(model)
    try:
        engine = EngineOptions.model_validate(key_values(engine_option or [], "--engine-option"))
    except ValidationError as exc:
        fail(f"engine options: {problems(exc)}")
    try:
        parse_model(model, engine).protocol_plan(protocol)
    except EngineError as exc:
        fail(str(exc))
    options = scenario_options(option or [], scenario)
    try:
        data_dir()  # where the system's environment lives: a bad REDLINE_DATA_DIR stops here
    except EnvBuildError as exc:
        fail(str(exc))
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    specs = []
    for i in range(trials):
        # unique across runs: a report over two runs must not merge two trials into one
        try:
            specs.append(TrialSpec(
                model=model, scenario=scenario, setup=setup, protocol=protocol,
                max_steps=max_steps,
                time_limit_s=time_limit, seed=seed + i, wait_window_s=wait_window,
                sandbox={"profile": profile, **({"disk_mb": disk_mb} if disk_mb else {})},
                trial_id=f"{scenario}-{stamp}-{i:03d}",
                resources=Resources(cpus=cpus or defaults.CPUS, gpus=gpus,
                                    replica_gpus=replica_gpus,
                                    memory_mb=memory_mb or defaults.MEMORY_MB),
                scenario_options=options, engine=engine))
        except ValidationError as exc:
            fail(problems(exc))
    if gpus or parse_model(model, engine).info.gpu:
        check_gpus(specs[0])  # before the output folder is made
    out = check_out_dir(out or Path("runs") / stamp)
    progress_console = stderr_console()
    _warn_if_short_of_disk(specs[0], out, progress_console)
    verdicts = []
    with stop_on_signals():  # SIGTERM and SIGHUP end it as Ctrl-C does
        for i, spec in enumerate(specs):
            try:
                with TrialProgress(progress_console, f"trial {i + 1}/{trials}") as progress:
                    verdicts.append(run_trial(spec, out / str(spec.trial_id),
                                              on_event=progress.on_event))
            except KeyboardInterrupt as exc:
                _stopped(spec, out, exc, len(verdicts))
            except VerdictNotKept as exc:
                _not_kept(exc)
    summary = write_summary(out)  # the same summary.json as an experiment's
    if as_json:
        typer.echo(json.dumps({"out": str(out), "summary": summary,
                               "verdicts": [v.model_dump(mode="json") for v in verdicts]},
                              indent=1, default=str))
    else:
        console = stdout_console()
        console.print(verdict_table(verdicts))
        for spec in specs[:len(verdicts)]:
            for line in recap_lines(load_trial(out / str(spec.trial_id))):
                console.print(line, markup=False, highlight=False)
        report = build_report(out)
        console.print(f"results in {out}; the report (plots, every step): {report}",
                      markup=False)
    if any(not v.is_judged for v in verdicts):
        raise typer.Exit(EXIT_TRIAL_ERROR)


@app.command()
def doctor(
    model: str = typer.Option(DEFAULT_MODEL, "--model", help=MODEL_SPECS),
    gpus: int = typer.Option(0, "--gpus", min=0, help="GPUs per system, as for `run`"),
    replica_gpus: int | None = typer.Option(None, "--replica-gpus", min=0,
                                            help="GPUs per copy, as for `run`"),
    scenario: str = typer.Option("replicate", "--scenario",
                                 help="the scenario (how many copies it expects)"),
) -> None:
    """Whether a trial of MODEL on N GPUs can run here: one line per prerequisite, and what to
    do where it does not hold. Exit 0 only if it can (docs/gpu.md, "Doctor")."""
    from redline.trial.doctor import diagnose  # noqa: PLC0415

    if scenario not in SCENARIOS:
        fail(f"unknown scenario {scenario!r}: choose from {', '.join(SCENARIOS.names())}")
    if not diagnose(model, gpus, replica_gpus, scenario, echo=typer.echo):
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
