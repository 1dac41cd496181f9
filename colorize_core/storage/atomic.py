"""Atomic local writes: a temporary file (named for its host and process, so a sweep knows a dead
writer's), fsync, rename; files get the process umask."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from colorize_core.storage.procs import this_host


_MKDIR_TRIES = 20


def _temporary_name() -> str:
    # Host and pid first: the sweep knows a dead writer's files from a live one's.
    return f"{this_host()}-{os.getpid()}-{secrets.token_hex(6)}.tmp"


def open_new(path: Path) -> int:
    # 0o666 less the process umask (0644 under umask 022); mkstemp's 0600 hid outputs from
    # other users and web servers.
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, tmp_dir: str | os.PathLike[str] | None = None, *, exclusive: bool = False) -> None:
    """Write to a temporary file (in `tmp_dir`, else beside `path`), fsync, then rename over
    `path` (`exclusive`: link instead, failing with FileExistsError if `path` exists).

    A `tmp_dir` this leaves empty is removed: no trace beside a user's files. Writers in other
    threads may remove it between our mkdir and our open; we then make it again."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tmp_dir) if tmp_dir is not None else target.parent
    tmp = folder / (("." if tmp_dir is None else "") + _temporary_name())
    for attempt in range(_MKDIR_TRIES):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = open_new(tmp)
            break
        except (FileNotFoundError, FileExistsError):  # the folder went between the two calls
            if attempt == _MKDIR_TRIES - 1 or tmp.exists():
                raise
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            os.link(tmp, target)  # atomic and complete: fails if the target exists
        else:
            os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
        if tmp_dir is not None:
            try:
                folder.rmdir()
            except OSError:
                pass  # other writers' temporaries are in it


def is_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")
