"""`redline experiment ...` commands."""

import typer

app = typer.Typer(help="experiment commands", no_args_is_help=True)
