"""A harness stopped from outside: Ctrl-C, or the signals users' tools send (`timeout`, systemd,
`docker stop` and Slurm send SIGTERM; a closed terminal sends SIGHUP).

Every one of them ends a command the way Ctrl-C does: the exception unwinds through the trial,
which writes a verdict with a stated error (`Verdict.interrupted` names the signal) and tears its
sandbox down on the way; the command then exits with 128 + the signal's number (130, 143, 129).
A second signal while that runs is ignored: tearing down must not be cut short.

Shared by every area (a leaf module): the CLI installs the handlers, the trial and the
experiment runner catch `KeyboardInterrupt` and read `signal_name` from it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """Raised in the main thread when SIGTERM or SIGHUP arrives (`stop_on_signals`)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


def signal_name(exc: BaseException) -> str:
    """SIGINT for a plain KeyboardInterrupt (Ctrl-C), else the signal that stopped us."""
    return signal.Signals(exc.signum).name if isinstance(exc, Stopped) else "SIGINT"


def exit_code(exc: BaseException) -> int:
    """128 + the signal's number, as a shell reports a process the signal ended."""
    return 128 + (exc.signum if isinstance(exc, Stopped) else signal.SIGINT)


def _install() -> dict[int, object]:
    """Handlers for SIGINT, SIGTERM and SIGHUP that raise in the main thread, the first signal
    only; returns the handlers they replace."""
    fired: list[int] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        if fired:
            return
        fired.append(signum)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Stopped(signum)

    return {s: signal.signal(s, handler) for s in (signal.SIGINT, *STOP_SIGNALS)}


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt and SIGTERM or SIGHUP raise `Stopped` in the main
    thread, the first of them only: later ones are ignored until the block ends, so the
    teardown the first one started runs to the end. Outside the main thread (where no handler
    can be installed) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = _install()
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)  # type: ignore[arg-type]


def stop_on_signals_for_good() -> None:
    """The same for the rest of the process: an experiment's worker, whose runner passes on the
    signal that stopped it."""
    if threading.current_thread() is threading.main_thread():
        _install()
