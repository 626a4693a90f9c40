"""`redline system ...` commands."""

import typer

app = typer.Typer(help="system commands", no_args_is_help=True)
