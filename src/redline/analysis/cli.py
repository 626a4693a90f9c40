"""`redline export inspect DIR` (this module's `app`) and `redline report DIR` (`report_command`).

`report_command` is a plain function so the top-level CLI can mount it as `redline report`
with `app.command("report")(report_command)`; it also works when called directly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer

from redline.analysis.runs import load_run
from redline.cliapp import check_out_dir, fail, make_app

app = make_app("Export trials to other log formats.")

RunDir = Annotated[Path, typer.Argument(help="run directory: trial folders, summary.json, "
                                             "optional index.sqlite", exists=True,
                                        file_okay=False)]


@app.command("inspect")
def inspect_command(
    dir: RunDir,
    out: Annotated[Path | None, typer.Option("--out", help="output folder "
                                             "(default DIR/inspect)")] = None,
    fmt: Annotated[Literal["eval", "json"],
                   typer.Option("--format", help="eval (zip) or json")] = "eval",
) -> None:
    """Write Inspect AI logs (one per model x scenario) that `inspect view` opens."""
    check_trials(dir)
    if out:
        check_out_dir(out)
    try:
        from redline.analysis.inspect_export import export_inspect  # noqa: PLC0415
    except ImportError as exc:
        fail(f"inspect_ai is not installed ({exc}); pip install 'redline[inspect]'")
    paths = export_inspect(dir, out, fmt)
    if not paths:
        fail(f"no trials found in {dir}")
    for p in paths:
        typer.echo(str(p))
    typer.echo(f"open with: inspect view --log-dir {paths[0].parent}")


def check_trials(folder: Path) -> None:
    """A folder with no trial in it is bad input, for `report` and `export` as for
    `experiment summary`: one line, exit code 2, nothing written."""
    if not load_run(folder):  # its trials
        fail(f"no trials found in {folder}")


def report_command(
    dir: RunDir,
    out: Annotated[Path | None, typer.Option("--out", help="output folder "
                                             "(default DIR)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report's path and the "
                                          "outcome counts as JSON")] = False,
) -> None:
    """Write DIR/report.html (offline, self-contained) and the figures as PNGs beside it."""
    from redline.analysis.report import build_report  # noqa: PLC0415

    check_trials(Path(dir))
    if out:
        check_out_dir(Path(out))
    path = build_report(Path(dir), Path(out) if out else None)
    if as_json:
        analysis = json.loads((path.parent / "analysis.json").read_text())
        typer.echo(json.dumps({"report": str(path), "analysis": str(path.parent /
                                                                      "analysis.json"),
                               "outcomes": analysis.get("outcomes"),
                               "left_out": analysis.get("left_out", [])}, indent=1))
    else:
        typer.echo(str(path))
