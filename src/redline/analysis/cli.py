"""`redline analysis ...` commands."""

import typer

app = typer.Typer(help="analysis commands", no_args_is_help=True)
