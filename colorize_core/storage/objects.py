"""What a store is: its keys (relative, "/"-separated, validated so that no key reaches outside a
store's root), the objects it lists, the errors it raises, and the `ObjectStore` protocol that the
local folder (local.py) and S3 (s3.py) both implement."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import pyarrow as pa

    from colorize_core.storage.errors import RetryPolicy





class StorageError(OSError):
    """An object-store operation failed. `transient`: worth a retry (errors.py decides)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ObjectNotFound(StorageError, FileNotFoundError):
    """The key does not exist in the store."""


class LocationNotFound(StorageError):
    """A store's root does not exist: no such folder, bucket or prefix."""


class InvalidKeyError(ValueError):
    """A key that could escape the store's root or cannot be stored safely. `permanent`: the
    name's own fault (False: the store's, such as a file standing where a folder of the path
    should be, which clearing it fixes)."""

    def __init__(self, message: str, *, permanent: bool = True) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str


def validate_key(key: str) -> str:
    """Return `key` if it is a safe relative key, else raise `InvalidKeyError` saying why."""
    if not key:
        raise InvalidKeyError("empty key")
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise InvalidKeyError(f"key {key!r} contains NUL or control characters")
    if key.startswith("/") or "\\" in key or (len(key) > 1 and key[1] == ":"):
        raise InvalidKeyError(f"key {key!r} is an absolute path; keys are relative to the store")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InvalidKeyError(f"key {key!r} has an empty, '.' or '..' segment")
    return key


def key_problem(key: str) -> str | None:
    """Why `key` cannot be used in any store, or None."""
    try:
        validate_key(key)
    except InvalidKeyError as exc:
        return str(exc)
    return None


def join_key(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


class ObjectStore(Protocol):
    uri: str

    def check_key(self, key: str) -> str | None: ...
    def require_root(self) -> None: ...
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...
    # The same listing as record batches (columns.LISTED_SCHEMA: key, size, etag, and why the
    # store cannot name an object safely), in order: an archive's listing travels as columns.
    def list_batches(self, prefix: str = "") -> Iterator[pa.RecordBatch]: ...
    def read(self, key: str) -> bytes: ...
    def read_range(self, key: str, start: int, length: int) -> bytes: ...
    def size(self, key: str) -> int: ...
    def write(self, key: str, data: bytes) -> None: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def create(self, key: str, data: bytes) -> str | None: ...
    def replace(self, key: str, data: bytes, etag: str) -> str | None: ...
    def etag(self, key: str) -> str: ...
    # What only some stores have, asked of every store (no caller tests a store's type):
    def local_path(self, key: str = "") -> Path | None: ...  # a key's (or the root's) file, None off the local disk
    def sweep_temporaries(self) -> int: ...  # what killed writers left behind, removed; how many
    # The same store whose calls retry transient errors under `policy` instead of the default
    # (COLORIZE_RETRY_SECONDS): a lease's renewal must give up long before five minutes.
    def with_retries(self, policy: RetryPolicy) -> ObjectStore: ...
