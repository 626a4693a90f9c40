"""`redline export inspect DIR` (this module's `app`) and `redline report DIR` (`report_command`).

`report_command` is a plain function so the top-level CLI can mount it as `redline report`
with `app.command("report")(report_command)`; it also works when called directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Export trials to other log formats.", no_args_is_help=True)

RunDir = Annotated[Path, typer.Argument(help="run directory: trial folders, summary.json, "
                                             "optional index.sqlite", exists=True,
                                        file_okay=False)]


@app.command("inspect")
def inspect_command(
    dir: RunDir,
    out: Annotated[Path | None, typer.Option("--out", help="output folder "
                                             "(default DIR/inspect)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="eval (zip) or json")] = "eval",
) -> None:
    """Write Inspect AI logs (one per model x scenario) that `inspect view` opens."""
    try:
        from redline.analysis.inspect_export import export_inspect  # noqa: PLC0415
        if fmt not in ("eval", "json"):
            raise typer.BadParameter("--format must be eval or json")
        paths = export_inspect(dir, out, fmt)
    except ImportError as exc:
        typer.echo(f"error: inspect_ai is not installed ({exc}); pip install 'redline[inspect]'",
                   err=True)
        raise typer.Exit(2) from exc
    if not paths:
        typer.echo(f"no trials found in {dir}", err=True)
        raise typer.Exit(1)
    for p in paths:
        typer.echo(str(p))
    typer.echo(f"open with: inspect view --log-dir {paths[0].parent}")


def report_command(
    dir: RunDir,
    out: Annotated[Path | None, typer.Option("--out", help="output folder "
                                             "(default DIR)")] = None,
) -> None:
    """Write DIR/report.html (offline, self-contained) and the figures as PNGs beside it."""
    from redline.analysis.report import build_report  # noqa: PLC0415

    path = build_report(Path(dir), Path(out) if out else None)
    typer.echo(str(path))
