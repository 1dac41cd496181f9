"""Object storage behind one small interface: a local folder (a path or `file://`, the embedded
default) or `s3://bucket/prefix` through boto3.

Keys are relative, "/"-separated and validated, so no key can reach outside a store's root.
Listings are sorted by key (S3 lists in UTF-8 byte order; the local store sorts the same way).
Local writes are atomic: a temporary file in the same folder, fsync, rename. S3 honours
`AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_S3` (MinIO and other S3-compatible stores) and the standard
credential chain; botocore retries throttling and 5xx with backoff.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse


class StorageError(OSError):
    """An object-store operation failed (network, permissions, service); usually worth a retry."""


class ObjectNotFound(StorageError, FileNotFoundError):
    """The key does not exist in the store."""


class InvalidKeyError(ValueError):
    """A key that could escape the store's root or cannot be stored safely."""


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


def join_key(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


class ObjectStore(Protocol):
    uri: str

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...
    def read(self, key: str) -> bytes: ...
    def read_range(self, key: str, start: int, length: int) -> bytes: ...
    def size(self, key: str) -> int: ...
    def write(self, key: str, data: bytes) -> None: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


class LocalStore:
    """A folder on a local disk. The etag is size and modification time (as rsync compares), so
    listing millions of files reads no file contents."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        path = self.root / validate_key(key)
        # Defence in depth: a symlinked folder inside the root must not lead writes outside it.
        if not path.resolve().is_relative_to(self.root):
            raise InvalidKeyError(f"key {key!r} resolves outside the store root {self.root}")
        return path

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # Walk only the folder the prefix names: listing `_colorize/metadata/` must not visit
        # every colorized image beside it.
        folder = prefix.rpartition("/")[0]
        start = self._path(folder) if folder else self.root
        if not start.is_dir():
            return
        found: list[tuple[bytes, str, os.stat_result]] = []
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                if _is_temporary(name):
                    continue
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if key.startswith(prefix):
                    found.append((key.encode("utf-8", "surrogateescape"), key, os.stat(os.path.join(dirpath, name))))
        for _, key, st in sorted(found, key=lambda t: t[0]):  # UTF-8 byte order, as S3 lists
            yield ObjectInfo(key, st.st_size, f"{st.st_size:x}-{st.st_mtime_ns:x}")

    def read(self, key: str) -> bytes:
        return self.read_range(key, 0, -1)

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Up to `length` bytes from offset `start` (fewer at the end of the object; -1: to the end)."""
        path = self._path(key)
        try:
            with path.open("rb") as f:
                f.seek(start)
                return f.read(length)
        except FileNotFoundError:
            raise ObjectNotFound(f"{self.uri}: no object {key!r}") from None
        except OSError as exc:
            raise StorageError(f"{self.uri}: cannot read {key!r}: {exc.strerror or exc}") from None

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise ObjectNotFound(f"{self.uri}: no object {key!r}") from None
        except OSError as exc:
            raise StorageError(f"{self.uri}: cannot stat {key!r}: {exc.strerror or exc}") from None

    def write(self, key: str, data: bytes) -> None:
        atomic_write_bytes(self._path(key), data)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


_clients: dict[tuple[int, int, int], Any] = {}
_clients_lock = threading.Lock()


def _s3_client(max_connections: int, max_attempts: int) -> Any:
    """One boto3 client per process and setting: making one costs ~100 ms, and clients are
    thread-safe; keyed by pid because a client must not cross a fork (DataLoader workers fork)."""
    key = (os.getpid(), max_connections, max_attempts)
    with _clients_lock:
        if key not in _clients:
            import boto3
            from botocore.config import Config

            config = Config(
                retries={"max_attempts": max_attempts, "mode": "adaptive"},  # throttling and 5xx, with backoff
                max_pool_connections=max_connections,  # one connection per concurrent request
            )
            # boto3 reads AWS_ENDPOINT_URL(_S3), the region and credentials from the standard chain.
            _clients[key] = boto3.session.Session().client("s3", config=config)
        return _clients[key]


class S3Store:
    """`s3://bucket/prefix` through boto3, sharing one client per process."""

    def __init__(self, bucket: str, prefix: str = "", *, max_connections: int = 32, max_attempts: int = 8) -> None:
        if not bucket:
            raise InvalidKeyError("s3:// URI without a bucket")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._max_connections, self._max_attempts = max_connections, max_attempts
        self.page_size = 1000  # keys per LIST request (S3's maximum)

    @property
    def client(self) -> Any:
        return _s3_client(self._max_connections, self._max_attempts)

    def _key(self, key: str) -> str:
        return join_key(self.prefix, validate_key(key))

    def _error(self, exc: Exception, what: str, key: str) -> StorageError:
        # Only the service's error code and message: never the request, which carries signatures.
        response = getattr(exc, "response", None) or {}
        code = str(response.get("Error", {}).get("Code", ""))
        if code in ("NoSuchKey", "404", "NotFound"):
            return ObjectNotFound(f"{self.uri}: no object {key!r}")
        detail = f"{code}: " if code else ""
        return StorageError(f"{self.uri}: cannot {what} {key!r}: {detail}{type(exc).__name__}: {exc}")

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        from botocore.exceptions import BotoCoreError, ClientError

        base = f"{self.prefix}/" if self.prefix else ""
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            pages = paginator.paginate(Bucket=self.bucket, Prefix=base + prefix, PaginationConfig={"PageSize": self.page_size})
            for page in pages:
                for obj in page.get("Contents", []):
                    key = obj["Key"][len(base) :]
                    if key and not key.endswith("/"):
                        yield ObjectInfo(key, int(obj["Size"]), obj["ETag"].strip('"'))
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, "list", prefix) from None

    def read(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, "read", key) from None

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Up to `length` bytes from offset `start` (fewer at the end of the object): one ranged GET."""
        from botocore.exceptions import BotoCoreError, ClientError

        if length <= 0:
            return b""
        try:
            rng = f"bytes={start}-{start + length - 1}"
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key), Range=rng)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return b""  # starts past the end
            raise self._error(exc, "read", key) from None
        except BotoCoreError as exc:
            raise self._error(exc, "read", key) from None

    def size(self, key: str) -> int:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"])
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, "check", key) from None

    def write(self, key: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:  # a single PUT is atomic on S3: readers see the old object or the whole new one
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, "write", key) from None

    def exists(self, key: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except (BotoCoreError, ClientError) as exc:
            err = self._error(exc, "check", key)
            if isinstance(err, ObjectNotFound):
                return False
            raise err from None

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, "delete", key) from None


class RangeReader(io.RawIOBase):
    """A read-only, seekable file over one object's ranged reads: a Parquet reader fetches the
    footer and the row groups it needs, not the whole object (each read is one ranged GET)."""

    def __init__(self, store: ObjectStore, key: str) -> None:
        self._store, self._key = store, key
        self._size = store.size(key)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self._size - self._pos)
        if want <= 0:
            return 0
        data = self._store.read_range(self._key, self._pos, want)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


def open_store(uri: str | os.PathLike[str], **s3_options: Any) -> ObjectStore:
    """`s3://bucket/prefix`, `file:///path` or a plain path -> the store rooted there."""
    text = os.fspath(uri)
    parsed = urlparse(text)
    if parsed.scheme == "s3":
        return S3Store(parsed.netloc, parsed.path, **s3_options)
    if parsed.scheme == "file":
        return LocalStore(unquote(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:  # "C:\\..." parses with scheme "c"
        raise ValueError(f"unsupported storage URI {text!r}: use a local path, file:// or s3://")
    return LocalStore(text)


def child_uri(uri: str, key: str) -> str:
    """The URI of `key` under the store at `uri` (local paths resolved): the inverse of split_uri."""
    return f"{open_store(uri).uri.rstrip('/')}/{validate_key(key)}"


def split_uri(uri: str | os.PathLike[str]) -> tuple[ObjectStore, str]:
    """The URI of one object -> (the store of its parent, its key): `s3://b/a/m.parquet` ->
    (store at s3://b/a, "m.parquet")."""
    text = os.fspath(uri).rstrip("/")
    parent, _, name = text.rpartition("/")
    if not name or parent in ("s3:", "s3:/"):
        raise ValueError(f"{text!r} does not name an object")
    return open_store(parent or "."), name
