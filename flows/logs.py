"""Where a `colorize` command's logs go: everything, tracebacks included, to a log file
(`$COLORIZE_HOME/logs/colorize.log`) and, for flow runs, to the Prefect server (the UI); the
terminal gets the progress lines without tracebacks (all of it with `--verbose`)."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

from colorize_core.settings import colorize_home


def log_path() -> Path:
    return colorize_home() / "logs" / "colorize.log"


class _WithoutTraceback(logging.Formatter):
    """Formats as `inner` does, leaving out the traceback and stack (on a copy of the record:
    Prefect's API handler formats the same record later, traceback and all)."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        if not (record.exc_info or record.exc_text or record.stack_info):
            return self.inner.format(record)
        bare = logging.makeLogRecord(record.__dict__)
        bare.exc_info, bare.exc_text, bare.stack_info = None, None, None
        return self.inner.format(bare)


_CHATTER = ("Starting temporary server", "Stopping temporary server", "Still processing items")


def _not_server_chatter(record: logging.LogRecord) -> bool:
    # Prefect's notes on its temporary server and on draining its workers at exit say nothing
    # to an operator and would print after a command's last line; the log file still has them.
    return not str(record.msg).startswith(_CHATTER)


def setup_logging(verbose: bool, *, with_prefect: bool) -> Path | None:
    """Configure logging for one command; returns the log file (None if it cannot be written).
    `with_prefect`: Prefect is imported (its logging configured) first, so its console handler
    is the one made quiet."""
    level = logging.DEBUG if verbose else logging.INFO
    if with_prefect:
        import prefect.main  # noqa: F401 - configures Prefect's logging on import
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("colorize_core").setLevel(level)
    logging.getLogger("flows").setLevel(level)
    for handler in root.handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.addFilter(_not_server_chatter)
            if not verbose and not isinstance(handler.formatter, _WithoutTraceback):
                handler.setFormatter(_WithoutTraceback(handler.formatter))
    path = log_path()
    if any(getattr(h, "baseFilename", None) == str(path) for h in root.handlers):
        return path  # set up already (a second command in one process)
    # Python warnings (a library's deprecations, torch.jit's tracer notes while the int8 model is
    # made) are details for the log file, not lines on an operator's terminal; --verbose shows them.
    logging.captureWarnings(True)
    WARNINGS.propagate = verbose
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(path, maxBytes=10_000_000, backupCount=5, encoding="utf-8")
    except OSError:
        return None
    file_handler.setLevel(level)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    root.addHandler(file_handler)
    DETAILS.addHandler(file_handler)
    if not verbose:
        WARNINGS.addHandler(file_handler)
    return path


# Python warnings, once captured: to the log file only (no handler at all would print them).
WARNINGS = logging.getLogger("py.warnings")
WARNINGS.addHandler(logging.NullHandler())

# Tracebacks of failed commands: to the log file only (the terminal gets one line).
DETAILS = logging.getLogger("colorize.details")
DETAILS.propagate = False
DETAILS.addHandler(logging.NullHandler())  # no log file: the traceback goes nowhere, not to stderr
