"""How a `colorize` command ends: its exit status (`EXIT_STATUSES`, the one table: the command's
help is made from it and the README's table is checked against it), and the one line that says
what went wrong."""

from __future__ import annotations

import signal
from types import FrameType

from colorize_core.archive.lease import DestinationBusy
from colorize_core.storage.errors import STOP, Interrupted

EXIT_OK, EXIT_ERROR, EXIT_PARTIAL, EXIT_BUSY, EXIT_SIGINT, EXIT_SIGTERM = 0, 1, 2, 75, 130, 143

EXIT_STATUSES: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "done"),
    (EXIT_ERROR, "error (one line on stderr, details in the log: a wrong argument is refused at once)"),
    (EXIT_PARTIAL, "some inputs failed in this run (each named: archive does not count known failures left alone), the rest done"),
    (EXIT_BUSY, "destination busy: another run holds its lease (archive, EX_TEMPFAIL: try again later)"),
    (EXIT_SIGINT, "stopped by SIGINT (Ctrl-C): what was not committed is redone by the next run"),
    (EXIT_SIGTERM, "stopped by SIGTERM, likewise"),
)


def exit_status_help() -> str:
    """The exit statuses as one paragraph, for a command's help."""
    return "Exit status: " + "; ".join(f"{status} {meaning}" for status, meaning in EXIT_STATUSES) + "."


class Terminated(BaseException):
    """SIGTERM, raised in the main thread (a BaseException, like KeyboardInterrupt: no
    `except Exception` on the way up may swallow it)."""


_received: list[int] = []  # the signals this process was stopped by


def note_signal(signum: int) -> None:
    """Record that a signal stops this process, for code that handles the signal itself
    (`colorize serve`'s runner): every thread sees `STOP`, and the exit status is the signal's."""
    _received.append(signum)
    STOP.set()


def stopped_by() -> int | None:
    """The exit status for the signal that stopped this process (130 or 143), or None."""
    if not _received:
        return None
    return EXIT_SIGINT if _received[0] == signal.SIGINT else EXIT_SIGTERM


def _on_signal(signum: int, frame: FrameType | None) -> None:
    note_signal(signum)
    if len(_received) == 1:  # a second signal must not break the cleanup the first one started
        raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated()


def install_signal_handlers() -> None:
    """SIGTERM and SIGINT stop the command cleanly: every thread sees `errors.STOP` (shards
    abandon their work uncommitted, retry pauses end) and the main thread unwinds, so temporary
    files are removed and the temporary Prefect server is stopped on the way out."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)


def exit_status(exc: BaseException) -> int:
    if isinstance(exc, DestinationBusy):
        return EXIT_BUSY
    stopped = stopped_by()
    if stopped is not None:  # however the stop surfaced (Prefect's TerminationSignal, Interrupted, ...)
        return stopped
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_SIGINT
    if isinstance(exc, (Terminated, Interrupted)) or type(exc).__name__ == "TerminationSignal":
        return EXIT_SIGTERM
    return EXIT_ERROR


def one_line(exc: BaseException) -> str:
    """The exception's message as one line: the first line of its text, or its type."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
