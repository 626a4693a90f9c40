"""`redline experiment ...`: run a grid from an experiment file, summarize a results folder.

Also runnable as `python -m redline.experiment.cli`, which the crash tests use.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import typer
from rich.console import Console


def _console() -> Console:
    """Logs and CI output are not terminals: give tables room instead of rich's 80 columns."""
    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, 130))


app = typer.Typer(help="experiment commands", no_args_is_help=True,
                  pretty_exceptions_enable=False)


@app.command()
def run(
    file: Path = typer.Argument(..., help="experiment file (TOML, or YAML)"),
    backend: str = typer.Option(None, "--backend",
                                help="local or ray (default: the file's `backend`, else local)"),
    parallel: int = typer.Option(None, "--parallel", min=1,
                                 help="at most N trials at once (also bounded by resources)"),
    out: Path = typer.Option(None, "--out",
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
    from redline.experiment.config import ExperimentError, load_experiment  # noqa: PLC0415
    from redline.experiment.progress import GridProgress  # noqa: PLC0415
    from redline.experiment.runner import BackendError, run_experiment  # noqa: PLC0415
    from redline.experiment.store import StoreBusy  # noqa: PLC0415
    from redline.experiment.summary import (
        summary_table,  # noqa: PLC0415
        write_summary,  # noqa: PLC0415
    )

    console = _console()
    if backend not in (None, "local", "ray"):
        console.print(f"[red]error:[/] --backend must be local or ray, not {backend!r}")
        raise typer.Exit(2)
    chosen: Literal["local", "ray"] | None = backend  # type: ignore[assignment]
    try:
        exp = load_experiment(file)
    except ExperimentError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    out = out or Path(exp.out or Path("runs") / exp.name)
    progress = GridProgress(console)
    try:
        result = run_experiment(exp, out, backend=chosen, parallel=parallel,
                                retry_errors=retry_errors, ray_address=ray_address,
                                listener=progress, console=console)
    except (StoreBusy, BackendError) as exc:
        progress.stop()
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        progress.stop()
        write_summary(out)
        console.print(f"[yellow]interrupted[/]: finished trials are kept in {out}; run the same "
                      "command again to resume")
        raise typer.Exit(130) from None
    progress.stop()
    summary = write_summary(out)
    console.print(summary_table(summary, exp.name))
    console.print(f"ran {result.ran} trials in {result.wall_s:.1f} s on {result.slots} slots; "
                  f"results in {out}")
    if result.errors:
        console.print(f"[yellow]{result.errors} trials ended with an error[/] "
                      "(see their verdict.json; --retry-errors runs them again)")
        raise typer.Exit(1)


@app.command()
def summary(
    folder: Path = typer.Argument(..., help="results folder of `experiment run` or `run`"),
    as_json: bool = typer.Option(False, "--json", help="print summary.json instead of a table"),
) -> None:
    """Per-cell rates with 95% Wilson intervals; also writes FOLDER/summary.json."""
    from redline.experiment.summary import (
        summary_table,  # noqa: PLC0415
        write_summary,  # noqa: PLC0415
    )

    console = _console()
    if not folder.is_dir():
        console.print(f"[red]error:[/] no such folder: {folder}")
        raise typer.Exit(2)
    data = write_summary(folder)
    if not data["cells"]:
        console.print(f"[red]error:[/] no trials found in {folder}")
        raise typer.Exit(1)
    if as_json:
        print(json.dumps(data, indent=2))
    else:
        console.print(summary_table(data, folder.name))


if __name__ == "__main__":
    app()
