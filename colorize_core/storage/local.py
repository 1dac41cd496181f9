"""A local folder as an object store (the embedded default): atomic writes, a lock-file
conditional create and replace, sweeping what killed writers left in `.colorize-tmp/`."""

from __future__ import annotations

import copy
import errno
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from colorize_core.storage.atomic import atomic_write_bytes, is_temporary, open_new
from colorize_core.storage.errors import DISK_ERRNOS, NAME_ERRNOS, RetryPolicy, call_with_retries, is_transient
from colorize_core.storage.objects import InvalidKeyError, LocationNotFound, ObjectInfo, ObjectNotFound, StorageError, key_problem, validate_key
from colorize_core.storage.procs import pid_gone

if TYPE_CHECKING:
    import pyarrow as pa

T = TypeVar("T")

_BATCH_ROWS = 1 << 16  # a listing's batch (list_batches)


def _etag(size: int, mtime_ns: int) -> str:
    """A local file's etag: size and modification time in hex (an upgrade keeps this form)."""
    return f"{size:x}-{mtime_ns:x}"


TMP_DIR = ".colorize-tmp"  # a local store's temporaries: hidden from listings, swept by sweep_temporaries


def _local_error(exc: OSError, uri: str, what: str, key: str) -> Exception:
    """A local OSError as the project's error: a name this file system cannot hold fails that
    one object; a full or read-only disk is permanent; the rest as errors.py classifies it."""
    reason = exc.strerror or str(exc)
    if exc.errno in NAME_ERRNOS:
        return InvalidKeyError(f"{uri}: cannot {what} {key!r}: {reason}")
    if exc.errno in (errno.ENOTDIR, errno.EISDIR):
        return InvalidKeyError(f"{uri}: cannot {what} {key!r}: {reason}", permanent=False)
    if exc.errno in DISK_ERRNOS:
        return StorageError(f"{uri}: cannot {what} {key!r}: {reason}; free space (or make it writable) and re-run")
    return StorageError(f"{uri}: cannot {what} {key!r}: {reason}", transient=is_transient(exc))


class LocalStore:
    """A folder on a local disk. The etag is size and modification time (as rsync compares), so
    listing millions of files reads no file contents."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)
        self.tmp_dir = self.root / TMP_DIR
        self._name_limit: int | None = None
        self.retries: RetryPolicy | None = None  # None: the default (COLORIZE_RETRY_SECONDS); `with_retries`

    def _path(self, key: str) -> Path:
        path = self.root / validate_key(key)
        # Defence in depth: a symlinked folder inside the root must not lead writes outside it.
        if not path.resolve().is_relative_to(self.root):
            raise InvalidKeyError(f"key {key!r} resolves outside the store root {self.root}")
        return path

    def _call(self, fn: Callable[[], T], what: str, key: str) -> T:
        """`fn()` with OSErrors classified and transient ones retried. A missing file is
        `ObjectNotFound` when reading; `FileExistsError` passes through for `create`."""

        def attempt() -> T:
            try:
                return fn()
            except FileExistsError:
                if what == "create":
                    raise
                raise InvalidKeyError(f"{self.uri}: cannot {what} {key!r}: a file stands where a folder of its path should be", permanent=False) from None
            except FileNotFoundError:
                if what in ("read", "stat"):
                    raise ObjectNotFound(f"{self.uri}: no object {key!r}") from None
                # A folder of the path vanished under us (a concurrent delete): worth another go.
                raise StorageError(f"{self.uri}: cannot {what} {key!r}: a folder vanished while writing", transient=True) from None
            except OSError as exc:
                raise _local_error(exc, self.uri, what, key) from exc

        return call_with_retries(attempt, f"{self.uri}: {what} {key!r}", self.retries)

    def check_key(self, key: str) -> str | None:
        """Why this store cannot hold `key`, or None: an unsafe key, or a name longer than the
        file system allows."""
        problem = key_problem(key)
        if problem:
            return problem
        if self._name_limit is None:
            self._name_limit = _name_max(self.root)
        limit = self._name_limit
        for part in key.split("/"):
            if len(os.fsencode(part)) > limit:
                return f"key {key!r} has a name of {len(os.fsencode(part))} bytes; this file system holds at most {limit}"
        return None

    def require_root(self) -> None:
        if not self.root.is_dir():
            raise LocationNotFound(f"{self.uri} does not exist (or is not a folder)")

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for _, key, size, mtime_ns in self._found(prefix):
            yield ObjectInfo(key, size, _etag(size, mtime_ns))

    def list_batches(self, prefix: str = "") -> Iterator[pa.RecordBatch]:
        from colorize_core.storage.columns import batch_of

        found = self._found(prefix)
        for at in range(0, len(found), _BATCH_ROWS):  # columns straight from the scan, no object a file
            part = found[at : at + _BATCH_ROWS]
            yield batch_of([f[1] for f in part], [f[2] for f in part], [_etag(f[2], f[3]) for f in part])

    def _found(self, prefix: str) -> list[tuple[bytes, str, int, int]]:
        """(UTF-8 bytes, key, size, mtime_ns) of each file under `prefix`, in UTF-8 byte order."""
        # Walk only the folders the prefix can name: listing `_colorize/metadata/` must not
        # visit every colorized image beside it.
        folder = prefix.rpartition("/")[0]
        start = self._path(folder) if folder else self.root
        if not start.is_dir():
            return []
        found: list[tuple[bytes, str, int, int]] = []
        pending = [(str(start), f"{folder}/" if folder else "")]
        while pending:
            path, rel = pending.pop()
            try:
                entries = os.scandir(path)
            except OSError:
                continue  # removed or unreadable since its parent was read (os.walk skips it too)
            with entries:
                for entry in entries:
                    key = rel + entry.name
                    # is_dir() answers from the directory entry's type (no system call on Linux);
                    # a symlinked folder is not followed, as os.walk does not.
                    if entry.is_dir() and not entry.is_symlink():
                        if not entry.name.startswith(".") and (key.startswith(prefix) or prefix.startswith(f"{key}/")):
                            pending.append((entry.path, f"{key}/"))
                        continue
                    if is_temporary(entry.name) or not key.startswith(prefix) or entry.is_dir():
                        continue
                    try:
                        st = entry.stat()  # the one stat of this file (Windows: none, the entry has it)
                    except FileNotFoundError:
                        continue  # deleted since the folder was read, or a dangling symlink
                    found.append((key.encode("utf-8", "surrogateescape"), key, st.st_size, st.st_mtime_ns))
        found.sort(key=lambda t: t[0])  # UTF-8 byte order, as S3 lists
        return found

    def read(self, key: str) -> bytes:
        return self.read_range(key, 0, -1)

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Up to `length` bytes from offset `start` (fewer at the end of the object; -1: to the end)."""
        path = self._path(key)

        def read() -> bytes:
            with path.open("rb") as f:
                f.seek(start)
                return f.read(length)

        return self._call(read, "read", key)

    def size(self, key: str) -> int:
        path = self._path(key)
        return self._call(lambda: path.stat().st_size, "stat", key)

    def etag(self, key: str) -> str:
        path = self._path(key)
        st = self._call(path.stat, "stat", key)
        return _etag(st.st_size, st.st_mtime_ns)

    def _write(self, key: str, data: bytes, exclusive: bool) -> None:
        path = self._path(key)

        def write() -> None:
            try:
                atomic_write_bytes(path, data, self.tmp_dir, exclusive=exclusive)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                atomic_write_bytes(path, data, exclusive=exclusive)  # a mount point inside the store

        self._call(write, "create" if exclusive else "write", key)

    def write(self, key: str, data: bytes) -> None:
        self._write(key, data, exclusive=False)

    def create(self, key: str, data: bytes) -> str | None:
        """Write `key` only if it does not exist yet (atomically, whole): its new etag, or None
        if it existed."""
        try:
            self._write(key, data, exclusive=True)
        except FileExistsError:
            return None
        return self.etag(key)

    def replace(self, key: str, data: bytes, etag: str) -> str | None:
        """Overwrite `key` only while its etag is `etag`: the new etag, or None if it changed or
        vanished. A local folder has no compare-and-swap, so the check and the rename happen
        under a lock file (`<key>.lock`, taken with O_EXCL; one left by a killed process is
        broken after a minute)."""
        lock = self._path(key + ".lock")
        deadline = time.monotonic() + 30.0
        while True:
            try:
                os.close(open_new(lock))
                break
            except FileNotFoundError:
                return None  # not even its folder exists
            except FileExistsError:
                try:
                    if time.time() - lock.stat().st_mtime > 60.0:
                        lock.unlink(missing_ok=True)
                        continue
                except FileNotFoundError:
                    continue
                if time.monotonic() > deadline:
                    raise StorageError(f"{self.uri}: {key!r} stayed locked for 30 s", transient=True) from None
                time.sleep(0.01)
        try:
            try:
                if self.etag(key) != etag:
                    return None
            except ObjectNotFound:
                return None
            self.write(key, data)
            return self.etag(key)
        finally:
            lock.unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        path = self._path(key)
        self._call(lambda: path.unlink(missing_ok=True), "delete", key)

    def with_retries(self, policy: RetryPolicy) -> LocalStore:
        """This store, its calls retried under `policy` (a copy: the store itself is unchanged)."""
        other = copy.copy(self)
        other.retries = policy
        return other

    def local_path(self, key: str = "") -> Path:
        """The file of `key` (the root for ""), checked like every other key."""
        return self._path(key) if key else self.root

    def sweep_temporaries(self, min_age_s: float = 3600.0) -> int:
        """Delete temporaries no live writer owns: those of a dead process on this host, and any
        older than `min_age_s` (a writer elsewhere). Returns how many went."""
        if not self.tmp_dir.is_dir():
            return 0
        removed, now = 0, time.time()
        for entry in os.scandir(self.tmp_dir):
            try:
                old = now - entry.stat().st_mtime > min_age_s
            except FileNotFoundError:
                continue
            if old or not _writer_alive(entry.name):
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
        try:
            self.tmp_dir.rmdir()  # only if empty; a writer that races this gets a transient error
        except OSError:
            pass
        return removed


def _writer_alive(temporary: str) -> bool:
    """Whether the process named in a temporary's name (`<host>-<pid>-<hex>.tmp`) may still
    write it: True unless it surely no longer exists."""
    host, _, rest = temporary.partition("-")
    pid = rest.partition("-")[0]
    return not (pid.isdigit() and pid_gone(host, int(pid)))


def _name_max(folder: Path) -> int:
    """The longest file name (bytes) the file system at `folder` holds."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255
