"""COLORIZE_HOME: where this machine keeps the model registry (`registry/`) and the command
line's log file (`logs/colorize.log`). Defined once, here; `~/.colorize` unless set."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "COLORIZE_HOME"


def colorize_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".colorize")
