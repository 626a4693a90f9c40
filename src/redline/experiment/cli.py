"""`redline experiment ...`: run a grid from an experiment file, summarize a results folder.

Also runnable as `python -m redline.experiment.cli`, which the crash tests use.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import typer

from redline.cliapp import (
    EXIT_TRIAL_ERROR,
    check_out_dir,
    error_line,
    fail,
    make_app,
    stderr_console,
    stdout_console,
)
from redline.contracts.stop import exit_code, signal_name, stop_on_signals

app = make_app("Run grids of trials, summarize a results folder.")


@app.command()
def run(
    file: Path = typer.Argument(..., help="experiment file (TOML, or YAML)"),
    backend: Literal["local", "ray"] | None = typer.Option(
        None, "--backend", help="local or ray (default: the file's `backend`, else local)"),
    parallel: int = typer.Option(None, "--parallel", min=1,
                                 help="at most N trials at once (also bounded by resources)"),
    out: Path | None = typer.Option(None, "--out",
                             help="results folder (default: the file's `out`, else runs/<name>)"),
    retry_errors: bool = typer.Option(False, "--retry-errors",
                                      help="run again trials whose verdict is an error"),
    ray_address: str = typer.Option(None, "--ray-address",
                                    help="Ray cluster to use (default RAY_ADDRESS, else a "
                                         "private local instance on 127.0.0.1)"),
) -> None:
    """Run every trial of the grid that has no verdict yet in the results folder.

    Re-running the same command resumes: finished trials are kept, interrupted ones run again.
    """
    from redline.contracts.verdict import InvalidFile  # noqa: PLC0415
    from redline.experiment.config import ExperimentError, load_experiment  # noqa: PLC0415
    from redline.experiment.progress import GridProgress  # noqa: PLC0415
    from redline.experiment.runner import BackendError, run_experiment  # noqa: PLC0415
    from redline.experiment.store import StoreBusy  # noqa: PLC0415
    from redline.experiment.summary import (
        summary_table,  # noqa: PLC0415
        write_summary,  # noqa: PLC0415
    )

    try:
        exp = load_experiment(file)
    except ExperimentError as exc:
        fail(str(exc))
    out = check_out_dir(out or Path(exp.out or Path("runs") / exp.name))
    console = stderr_console()  # progress; the summary table goes to stdout
    progress = GridProgress(console)
    try:
        with stop_on_signals():  # SIGTERM and SIGHUP end it as Ctrl-C does
            result = run_experiment(exp, out, backend=backend, parallel=parallel,
                                    retry_errors=retry_errors, ray_address=ray_address,
                                    listener=progress, console=console)
    except (StoreBusy, BackendError, InvalidFile) as exc:  # InvalidFile: nothing is touched
        progress.stop()
        fail(str(exc))
    except KeyboardInterrupt as exc:
        progress.stop()
        write_summary(out)
        error_line(f"interrupted ({signal_name(exc)}): finished trials are kept in {out}; "
                   "the stopped ones run again when you run the same command again")
        raise typer.Exit(exit_code(exc)) from None
    progress.stop()
    summary = write_summary(out)
    results = stdout_console()
    results.print(summary_table(summary, exp.name))
    results.print(f"ran {result.ran} trials in {result.wall_s:.1f} s on {result.slots} slots; "
                  f"results in {out}", markup=False)
    if result.errors:
        console.print(f"{result.errors} trials ended with an error (see their verdict.json; "
                      "--retry-errors runs them again)", markup=False, style="yellow")
        raise typer.Exit(EXIT_TRIAL_ERROR)


@app.command()
def summary(
    folder: Path = typer.Argument(..., help="results folder of `experiment run` or `run`"),
    as_json: bool = typer.Option(False, "--json", help="print summary.json instead of a table"),
) -> None:
    """Per-cell rates with 95% Wilson intervals; also writes FOLDER/summary.json."""
    from redline.experiment.summary import (  # noqa: PLC0415
        left_out_lines,
        summary_table,
        write_summary,
    )

    if not folder.is_dir():
        fail(f"no such folder: {folder}")
    data = write_summary(folder)
    console = stderr_console()
    for line in left_out_lines(data):  # never counted; the count is in the table's caption
        console.print(f"left out (does not validate): {line}", markup=False)
    if not data["cells"]:  # the same error as `redline report` of such a folder
        fail(f"no trials found in {folder}" + (
            " that validate; summary.json was left as it was" if data["left_out"] else ""))
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        stdout_console().print(summary_table(data, folder.name))


if __name__ == "__main__":
    app()
