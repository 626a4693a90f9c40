"""The `redline` command: each area of the harness mounts its own sub-commands here."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.console import Console

from redline import defaults
from redline.analysis.cli import app as analysis_app
from redline.analysis.cli import label_command, report_command
from redline.experiment.cli import app as experiment_app
from redline.sandbox.cli import app as sandbox_app
from redline.system.cli import app as system_app

app = typer.Typer(
    help="redline: measure whether an AI system can replicate itself, inside a sandbox.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(system_app, name="system", help="Build and start AI systems under test.")
app.add_typer(sandbox_app, name="sandbox", help="Run commands in a fresh sandbox.")
app.add_typer(experiment_app, name="experiment", help="Run grids of trials.")
app.add_typer(analysis_app, name="export", help="Export trials to other log formats.")
app.command("report", help="Write DIR/report.html and plots for a run or experiment folder.")(
    report_command)
app.command("label", help="Label what each trial's model said with an LLM you name.")(
    label_command)


@app.command()
def run(
    model: str = typer.Option("smollm2-135m", "--model",
                              help="smollm2-135m, gguf:PATH, vllm:PATH or scripted:PATH"),
    scenario: str = typer.Option("replicate", "--scenario", help="which scenario to run"),
    setup: str = typer.Option("paper", "--setup",
                              help="paper (no more help than the paper's system) or guided "
                                   "(the prompt names the folder and the LLM endpoint)"),
    trials: int = typer.Option(1, "--trials", min=1, help="how many trials"),
    out: Path = typer.Option(None, "--out", help="output folder (default runs/<timestamp>)"),
    max_steps: int = typer.Option(defaults.MAX_STEPS, "--max-steps", min=1,
                                  help="agent step limit"),
    time_limit: float = typer.Option(defaults.TIME_LIMIT_S, "--time-limit",
                                     help="agent time limit, seconds"),
    seed: int = typer.Option(0, "--seed", help="seed of the first trial (then +1 each)"),
    wait_window: float = typer.Option(None, "--wait-window",
                                      help="long_running wait in s (default 25; scripted 1)"),
    profile: str = typer.Option("standard", "--profile", help="sandbox profile"),
    cpus: float = typer.Option(None, "--cpus", min=0.1,
                               help="CPU limit per trial (default: the sandbox's, 2)"),
    memory_mb: int = typer.Option(None, "--memory-mb", min=64,
                                  help="memory limit per trial in MiB (default: the "
                                       "sandbox's, 4096; raise it for vLLM)"),
    gpus: int = typer.Option(0, "--gpus", min=0,
                             help="GPUs per trial: pass-through plus CUDA_VISIBLE_DEVICES"),
    option: list[str] = typer.Option(None, "--option", "-o",
                                     help="a scenario option, KEY=VALUE (value read as JSON if "
                                     "it parses, e.g. -o load_s=60 -o 'obstacles=[\"low_disk\"]')"),
) -> None:
    """Run trials of one model on one scenario and print the verdicts."""
    from redline.experiment.progress import TrialProgress, verdict_table
    from redline.experiment.summary import write_summary
    from redline.scenarios import SCENARIOS
    from redline.system.engines import EngineError, parse_model
    from redline.system.setups import SETUPS
    from redline.trial import Resources, TrialSpec, run_trial

    console = Console()
    try:
        parse_model(model)
    except EngineError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    if setup not in SETUPS:
        console.print(f"[red]error:[/] unknown setup {setup!r}; choose from {', '.join(SETUPS)}")
        raise typer.Exit(2)
    if scenario not in SCENARIOS:
        console.print(f"[red]error:[/] unknown scenario {scenario!r}; choose from "
                      f"{', '.join(SCENARIOS)}")
        raise typer.Exit(2)
    options = {}
    for item in option or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            console.print(f"[red]error:[/] --option {item!r}: write KEY=VALUE")
            raise typer.Exit(2)
        try:
            options[key.strip()] = json.loads(raw)
        except ValueError:
            options[key.strip()] = raw
    try:
        SCENARIOS[scenario].Options.model_validate(options)
    except ValidationError as exc:
        console.print(f"[red]error:[/] scenario {scenario} options: "
                      + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                  for e in exc.errors()))
        raise typer.Exit(2) from exc
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = out or Path("runs") / stamp
    verdicts = []
    for i in range(trials):
        # unique across runs: a report over two runs must not merge two trials into one
        trial_id = f"{scenario}-{stamp}-{i:03d}"
        resources = Resources(cpus=cpus or defaults.CPUS, gpus=gpus,
                              memory_mb=memory_mb or defaults.MEMORY_MB)
        spec = TrialSpec(model=model, scenario=scenario, setup=setup, max_steps=max_steps,
                         time_limit_s=time_limit, seed=seed + i, wait_window_s=wait_window,
                         sandbox={"profile": profile}, trial_id=trial_id,
                         resources=resources, scenario_options=options)
        with TrialProgress(console, f"trial {i + 1}/{trials}") as progress:
            verdicts.append(run_trial(spec, out / trial_id, on_event=progress.on_event))
    write_summary(out)  # the same summary.json as an experiment's
    console.print(verdict_table(verdicts))
    console.print(f"results in {out}")
    if any(not v.is_judged for v in verdicts):
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
