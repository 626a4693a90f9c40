"""The `redline` command: each area of the harness mounts its own sub-commands here."""

from __future__ import annotations

import typer

from redline.analysis.cli import app as analysis_app
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


if __name__ == "__main__":
    app()
