"""What every `redline` command shares: one line per mistake, the exit codes, and where output goes.

A mistake of the user's is one line on stderr and exit code 2, never a traceback (`--debug`
shows it); error text is printed literally, never as markup, so a `[` in it survives. Results
go to stdout (a table, or JSON with `--json`) and progress to stderr, so `--json` output pipes.

Exit codes, the same for every sub-command:

| code | meaning |
|---|---|
| 0 | done |
| 1 | done, but a trial ended with an error (or `sandbox audit` found a giveaway) |
| 2 | bad input: nothing ran, nothing was written |
| 3 | an unexpected failure of redline itself (`--debug` shows the traceback) |
| 4 | the machine refused: a full disk, a read-only or forbidden folder (the line names the |
|   | path and the reason; a verdict is then printed on stdout and kept in a fallback folder) |
| 124 | `sandbox exec`: the command ran past `--timeout` |
| 125 | `sandbox exec`: the sandbox could not run it |
| 126 | `sandbox exec`: the command is not executable |
| 127 | `sandbox exec`: the command was not found |
| 130 | interrupted (Ctrl-C); finished work is kept, the sandbox is torn down |
| 143 | stopped by SIGTERM (`timeout`, systemd, `docker stop`, Slurm): as Ctrl-C |
| 129 | stopped by SIGHUP (the terminal closed): as Ctrl-C |

Otherwise `sandbox exec` exits with the command's own status, as `env` and `docker run` do.
`--debug` adds the traceback of a failure; it never changes the exit code.
"""

from __future__ import annotations

import errno
import math
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

# typer ships its own copy of click: its errors are these classes, not the click package's
from typer._click import exceptions as click
from typer.core import TyperGroup

from redline.contracts.stop import exit_code, signal_name, stop_on_signals
from redline.contracts.verdict import InvalidFile
from redline.inputs import InputError
from redline.sandbox.config import PROFILES
from redline.scenarios import SCENARIOS
from redline.system.engines import PROTOCOLS
from redline.system.setups import SETUPS

EXIT_OK = 0
EXIT_TRIAL_ERROR = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3
EXIT_ENVIRONMENT = 4
EXIT_TIMEOUT = 124
EXIT_CANNOT_RUN = 125
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127
EXIT_INTERRUPTED = 130


# The choices of --scenario, --setup, --profile and --protocol, as types: help lists them,
# typos are named.
ScenarioName = Literal[tuple(SCENARIOS)]  # type: ignore[valid-type]
SetupName = Literal[tuple(SETUPS)]  # type: ignore[valid-type]
ProfileName = Literal[tuple(PROFILES)]  # type: ignore[valid-type]
ProtocolName = Literal[tuple(PROTOCOLS)]  # type: ignore[valid-type]


@dataclass
class Settings:
    """The top-level options (`redline --debug -q -v ...`), read by every sub-command."""

    debug: bool = False
    verbosity: int = 0  # -1 quiet, 0 normal, 1 verbose


DEBUG_ENV = "REDLINE_DEBUG"  # --debug for sub-apps run on their own (python -m ...)
SETTINGS = Settings(debug=DEBUG_ENV in os.environ)


class BadInput(click.ClickException):
    """A mistake of the user's, found before anything ran: one line, exit code 2."""

    exit_code = EXIT_BAD_INPUT


def fail(message: str) -> NoReturn:
    raise BadInput(message)


def problems(exc: ValidationError) -> str:
    """A pydantic error as one line: `field: what was wrong; ...`."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: "
                     f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors())


def error_line(message: str) -> None:
    """`error: ...` on stderr, literally (no markup)."""
    typer.echo(f"error: {message}", err=True)


def stderr_console() -> Console:
    """Progress and notes: stderr, no source-file column, no markup guessing in values. Logs
    and CI output are not terminals: give tables room instead of rich's 80 columns."""
    console = Console(stderr=True, log_path=False, highlight=False,
                      quiet=SETTINGS.verbosity < 0)
    return console if console.is_terminal else Console(
        stderr=True, log_path=False, highlight=False, quiet=SETTINGS.verbosity < 0,
        width=max(console.width, 130))


def stdout_console() -> Console:
    """Results (tables): stdout."""
    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False,
                                                       width=max(console.width, 130))


def plural(n: int, word: str) -> str:
    """`1 step`, `2 steps`."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


N = TypeVar("N", int, float)


def above(bound: float, *, inclusive: bool = False) -> Callable[[Any], Any]:
    """An option callback: the value (if given) must be > bound (>= with inclusive)."""

    def check(value: N | None) -> N | None:
        if value is not None and not math.isfinite(value):  # inf, nan: never a bound
            raise typer.BadParameter(f"must be a finite number, not {value}")
        if value is not None and (value < bound or (value == bound and not inclusive)):
            raise typer.BadParameter(f"must be {'>=' if inclusive else '>'} {bound:g}, "
                                     f"not {value:g}")
        return value

    return check


def check_out_dir(path: Path, option: str = "--out") -> Path:
    """A results folder that is, or can become, a folder; checked before anything starts and
    without creating it."""
    too_long = [part for part in path.parts if len(os.fsencode(part)) > NAME_MAX]
    if too_long or len(os.fsencode(str(path.absolute()))) >= PATH_MAX:
        fail(f"{option} {path}: a name is too long (at most {NAME_MAX} bytes a name, "
             f"{PATH_MAX - 1} in all)")
    if path.exists() and not path.is_dir():
        fail(f"{option} {path}: is a file, not a folder")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        fail(f"{option} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        fail(f"{option} {path}: {parent} is not writable")
    return path


class Group(TyperGroup):
    """Runs a command and turns every way it can end into one line and an exit code."""

    def main(self, args: Any = None, prog_name: str | None = None,  # noqa: D102 - click's
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        code = self._run(args, prog_name, complete_var, **extra)
        if standalone_mode:
            sys.exit(code)
        return code

    def _run(self, args: Any, prog_name: str | None, complete_var: str | None,
             **extra: Any) -> int:
        try:
            with stop_on_signals():  # SIGTERM and SIGHUP end every command as Ctrl-C does
                rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                  standalone_mode=False, **extra)
        except KeyboardInterrupt as exc:  # raised outside the command (click turns it to Abort)
            error_line(f"interrupted ({signal_name(exc)})")
            return exit_code(exc)
        except click.NoArgsIsHelpError as exc:
            typer.echo(exc.ctx.get_help() if exc.ctx else exc.format_message(), err=True)
            return EXIT_BAD_INPUT
        except click.UsageError as exc:
            hint = f" (see {exc.ctx.command_path} --help)" if exc.ctx else ""
            message = exc.format_message().replace("Value error, ", "").replace("\n", " ")
            error_line(message + hint)
            return EXIT_BAD_INPUT
        except click.ClickException as exc:
            error_line(exc.format_message())
            return exc.exit_code
        except (InvalidFile, InputError) as exc:  # a file given to it that is not what it must be
            if SETTINGS.debug:
                traceback.print_exc()
            error_line(str(exc).replace("\n", " "))
            return EXIT_BAD_INPUT
        except typer.Abort as exc:  # Ctrl-C, SIGTERM or SIGHUP inside the command
            cause = exc.__cause__ if isinstance(exc.__cause__, KeyboardInterrupt) else \
                KeyboardInterrupt()
            error_line(f"interrupted ({signal_name(cause)})")
            return exit_code(cause)
        except OSError as exc:
            if SETTINGS.debug:
                traceback.print_exc()
            if exc.errno in ENVIRONMENT_ERRNOS:  # the machine's, not redline's
                where = f"{exc.filename}: " if exc.filename else ""
                error_line(f"{where}{ENVIRONMENT_ERRNOS[exc.errno]} ({exc.strerror or exc})")
                return EXIT_ENVIRONMENT
            return _internal(exc)
        except Exception as exc:
            if SETTINGS.debug:
                traceback.print_exc()
            return _internal(exc)
        return rv if isinstance(rv, int) else EXIT_OK


NAME_MAX, PATH_MAX = 255, 4096  # Linux's limits on a file name and a path

# What the machine refuses, said in words (exit code 4).
ENVIRONMENT_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is spent",
                      errno.EACCES: "not permitted", errno.EPERM: "not permitted",
                      errno.EROFS: "a read-only filesystem", errno.EIO: "an I/O error"}


def _internal(exc: BaseException) -> int:
    first = (str(exc).strip().splitlines() or [""])[0]
    error_line(f"{type(exc).__name__}: {first} (a failure of redline itself; run with --debug "
               "for the traceback)")
    return EXIT_INTERNAL


def make_app(help: str, **kwargs: Any) -> typer.Typer:  # noqa: A002 - typer's name
    """A typer app with redline's conventions: plain help that lists choices, one-line
    errors."""
    return typer.Typer(help=help, cls=Group, no_args_is_help=True, rich_markup_mode=None,
                       pretty_exceptions_enable=False, **kwargs)
