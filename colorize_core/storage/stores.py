"""Object storage behind one small interface: a local folder (a path or `file://`, the embedded
default) or `s3://bucket/prefix` through boto3.

Keys are relative, "/"-separated and validated, so no key can reach outside a store's root.
Listings are sorted by key (S3 lists in UTF-8 byte order; the local store sorts the same way).
Local writes are atomic: a temporary file under the store's `.colorize-tmp/` folder, fsync,
rename (the next run sweeps what a killed writer left there); files get the process umask. S3
honours `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_S3` (MinIO and other S3-compatible stores) and the
standard credential chain.

Every call is retried while its error is transient, and fails at once when it is permanent
(errors.py decides which); a name a store cannot hold is an `InvalidKeyError`, a failure of that
one object, never of the run.
"""

from __future__ import annotations

import errno
import io
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote, urlparse

from colorize_core.storage.errors import DISK_ERRNOS, NAME_ERRNOS, call_with_retries, is_transient, service_code
from colorize_core.storage.procs import pid_gone, this_host

T = TypeVar("T")

S3_MAX_KEY_BYTES = 1024
TMP_DIR = ".colorize-tmp"  # a local store's temporaries: hidden from listings, swept by sweep_temporaries


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
    problem: str | None = None  # set by listing (archive/listing.py): why it cannot be processed safely


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
    def read(self, key: str) -> bytes: ...
    def read_range(self, key: str, start: int, length: int) -> bytes: ...
    def size(self, key: str) -> int: ...
    def write(self, key: str, data: bytes) -> None: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def create(self, key: str, data: bytes) -> str | None: ...
    def replace(self, key: str, data: bytes, etag: str) -> str | None: ...
    def etag(self, key: str) -> str: ...


_MKDIR_TRIES = 20


def _temporary_name() -> str:
    # Host and pid first: the sweep knows a dead writer's files from a live one's.
    return f"{this_host()}-{os.getpid()}-{secrets.token_hex(6)}.tmp"


def _open_new(path: Path) -> int:
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
            fd = _open_new(tmp)
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


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


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

        return call_with_retries(attempt, f"{self.uri}: {what} {key!r}")

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
        # Walk only the folders the prefix can name: listing `_colorize/metadata/` must not
        # visit every colorized image beside it.
        folder = prefix.rpartition("/")[0]
        start = self._path(folder) if folder else self.root
        if not start.is_dir():
            return
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
                    if _is_temporary(entry.name) or not key.startswith(prefix) or entry.is_dir():
                        continue
                    try:
                        st = entry.stat()  # the one stat of this file (Windows: none, the entry has it)
                    except FileNotFoundError:
                        continue  # deleted since the folder was read, or a dangling symlink
                    found.append((key.encode("utf-8", "surrogateescape"), key, st.st_size, st.st_mtime_ns))
        found.sort(key=lambda t: t[0])  # UTF-8 byte order, as S3 lists
        for _, key, size, mtime_ns in found:
            yield ObjectInfo(key, size, f"{size:x}-{mtime_ns:x}")

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
        return f"{st.st_size:x}-{st.st_mtime_ns:x}"

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
                os.close(_open_new(lock))
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


# S3 listing in parallel: LIST chains at once (each a connection of the client's pool), and how
# many levels of "folders" a listing splits at most to find enough prefixes to list side by side.
LIST_CONCURRENCY = 16
LIST_SPLIT_DEPTH = 3


@dataclass(frozen=True)
class CommonPrefix:
    """A delimiter listing's common prefix ("a/b/"): all keys under it, listed apart."""

    prefix: str


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def merge_by_prefix(items: Sequence[T], prefixes: Sequence[str], key: Callable[[T], str]) -> list[T | CommonPrefix]:
    """A delimiter listing's direct items and common prefixes in the order their keys take in
    the full listing (UTF-8 byte order).

    Why this is exact: the keys under a prefix C are one contiguous run of the byte order, and a
    direct key k (which never starts with C) sorts before every key of that run exactly when
    k < C: either k is a proper prefix of C, or they differ inside C. So placing each prefix by
    comparing C itself with the direct keys puts every run where it belongs ("a-b" < "a/" <
    "a0": '-' < '/' < '0')."""
    ordered_items = sorted(items, key=lambda item: _utf8(key(item)))
    ordered_prefixes = sorted(prefixes, key=_utf8)
    merged: list[T | CommonPrefix] = []
    i = 0
    for prefix in ordered_prefixes:
        bound = _utf8(prefix)
        while i < len(ordered_items) and _utf8(key(ordered_items[i])) < bound:
            merged.append(ordered_items[i])
            i += 1
        merged.append(CommonPrefix(prefix))
    merged.extend(ordered_items[i:])
    return merged


_clients: dict[tuple[object, ...], Any] = {}
_clients_lock = threading.Lock()

# Hints for errors whose fix is outside the project: what to check, named in the one line.
CREDENTIALS_HINT = "check the AWS credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE) and AWS_ENDPOINT_URL"
ENDPOINT_HINT = "check that the S3 endpoint is up and AWS_ENDPOINT_URL points at it"
CREDENTIAL_CODES = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "ExpiredToken", "InvalidToken"})


def _s3_client(max_connections: int) -> Any:
    """One boto3 client per process and setting: making one costs ~100 ms, and clients are
    thread-safe; keyed by pid because a client must not cross a fork (DataLoader workers fork)."""
    key = (os.getpid(), max_connections)
    with _clients_lock:
        if key not in _clients:
            import boto3
            from botocore.config import Config

            config = Config(
                # One retry policy for the whole project (errors.call_with_retries): botocore's own
                # would multiply it and give up on an outage after a few seconds.
                retries={"total_max_attempts": 1},
                connect_timeout=10,
                read_timeout=60,
                max_pool_connections=max_connections,  # one connection per concurrent request
            )
            # boto3 reads AWS_ENDPOINT_URL(_S3), the region and credentials from the standard chain.
            _clients[key] = boto3.session.Session().client("s3", config=config)
        return _clients[key]


def _lean_list_page(response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any) -> None:
    """Parse a ListObjectsV2 page in C (ElementTree) and leave botocore an empty document.

    Why: botocore walks every key's fields in Python and parses its LastModified with dateutil,
    ~70 ms of CPU per 1000 keys on a 2-core machine, more than a request's 30 ms of latency;
    threads then wait on the interpreter, not on S3, and a parallel listing is barely faster.
    Only what listing reads is kept (Key, Size, ETag, CommonPrefixes and the paging fields);
    botocore still URL-decodes the keys after the call (EncodingType). Anything unexpected (an
    error, another document) is left to botocore as it is."""
    from xml.etree import ElementTree

    if response_dict.get("status_code") != 200 or not isinstance(response_dict.get("body"), bytes):
        return
    try:
        root = ElementTree.fromstring(response_dict["body"])
    except ElementTree.ParseError:
        # A cut-off or empty 200 answer: retried, as botocore's own check (unregistered for this
        # client) would; handed on, an empty body would read as a last page and drop the rest.
        response_dict["status_code"] = 500
        return
    if root.tag.rpartition("}")[2] == "Error":
        response_dict["status_code"] = 500  # an error in a 200 answer: retried, as botocore's own check does
        return
    if root.tag.rpartition("}")[2] != "ListBucketResult":
        return
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    key_tag, size_tag, etag_tag = f"{ns}Key", f"{ns}Size", f"{ns}ETag"
    contents = [
        {"Key": c.findtext(key_tag) or "", "Size": int(c.findtext(size_tag) or 0), "ETag": c.findtext(etag_tag) or ""} for c in root.iterfind(f"{ns}Contents")
    ]
    prefixes = [{"Prefix": p.findtext(f"{ns}Prefix") or ""} for p in root.iterfind(f"{ns}CommonPrefixes")]
    parsed: dict[str, Any] = {}
    for element in root:
        tag = element.tag.rpartition("}")[2]
        if tag in ("Contents", "CommonPrefixes"):
            continue
        if tag == "IsTruncated":
            parsed[tag] = (element.text or "").strip().lower() == "true"
        elif tag in ("KeyCount", "MaxKeys"):
            parsed[tag] = int(element.text or 0)
        elif tag in ("Name", "Prefix", "Delimiter", "EncodingType", "ContinuationToken", "NextContinuationToken", "StartAfter"):
            parsed[tag] = element.text or ""
    if contents:
        parsed["Contents"] = contents
    if prefixes:
        parsed["CommonPrefixes"] = prefixes
    customized_response_dict.update(parsed)
    response_dict["body"] = b"<ListBucketResult/>"  # botocore's pass then finds nothing more to do


def _s3_list_client(max_connections: int) -> Any:
    """The client for LIST requests: the shared client's settings, its pages parsed by
    `_lean_list_page` (other calls keep botocore's full parse on the shared client)."""
    key = (os.getpid(), max_connections, "list")
    shared = _s3_client(max_connections)
    with _clients_lock:
        if key not in _clients:
            import boto3

            client = boto3.session.Session().client("s3", config=shared.meta.config)
            client.meta.events.register("before-parse.s3.ListObjectsV2", _lean_list_page)
            # botocore's check for an error in a 200 answer parses every page once more (a third
            # of the CPU a page costs); _lean_list_page makes the same check on its own parse.
            from botocore import handlers

            check = getattr(handlers, "_handle_200_error", None)
            if check is not None:
                client.meta.events.unregister("before-parse.s3.*", check)
            _clients[key] = client
        return _clients[key]


class S3Store:
    """`s3://bucket/prefix` through boto3, sharing one client per process."""

    def __init__(self, bucket: str, prefix: str = "", *, max_connections: int = 32) -> None:
        if not bucket:
            raise InvalidKeyError("s3:// URI without a bucket")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._max_connections = max_connections
        self.page_size = 1000  # keys per LIST request (S3's maximum)
        self.list_concurrency = LIST_CONCURRENCY  # parallel LIST chains; 1: one sequential chain

    @property
    def client(self) -> Any:
        return _s3_client(self._max_connections)

    @property
    def list_client(self) -> Any:
        return _s3_list_client(self._max_connections)

    def _key(self, key: str) -> str:
        return join_key(self.prefix, validate_key(key))

    def _error(self, exc: Exception, what: str, key: str) -> StorageError:
        # Only the service's error code and message: never the request, which carries signatures.
        code = service_code(exc)
        if code in ("NoSuchKey", "404", "NotFound"):
            return ObjectNotFound(f"{self.uri}: no object {key!r}")
        if code == "NoSuchBucket":
            return LocationNotFound(f"{self.uri}: bucket {self.bucket!r} does not exist (NoSuchBucket)")
        transient = is_transient(exc)
        detail = f"{code}: " if code else ""
        hint = ""
        if code in CREDENTIAL_CODES or type(exc).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
            hint = f"; {CREDENTIALS_HINT}"
        elif transient and not code:
            hint = f"; {ENDPOINT_HINT}"
        return StorageError(f"{self.uri}: cannot {what} {key!r}: {detail}{type(exc).__name__}: {exc}{hint}", transient=transient)

    def _call(self, fn: Callable[[], T], what: str, key: str) -> T:
        """`fn()` with botocore's errors as StorageErrors, transient ones retried."""
        from botocore.exceptions import BotoCoreError, ClientError

        def attempt() -> T:
            try:
                return fn()
            except (BotoCoreError, ClientError) as exc:
                raise self._error(exc, what, key) from None

        return call_with_retries(attempt, f"{self.uri}: {what} {key!r}")

    def check_key(self, key: str) -> str | None:
        """Why S3 cannot hold `key` under this prefix, or None."""
        problem = key_problem(key)
        if problem:
            return problem
        try:
            size = len(self._key(key).encode("utf-8"))
        except UnicodeEncodeError:
            return f"key {key!r} is not valid UTF-8"
        if size > S3_MAX_KEY_BYTES:
            return f"key {key!r} is {size} bytes with the prefix; S3 holds at most {S3_MAX_KEY_BYTES}"
        return None

    def require_root(self) -> None:
        """The bucket exists and, with a prefix, something lies under it (S3 has no empty
        folders but for a `prefix/` marker, which counts)."""
        try:
            self._call(lambda: self.client.head_bucket(Bucket=self.bucket), "open", "")
        except ObjectNotFound:  # HEAD answers a bare 404 for a missing bucket
            raise LocationNotFound(f"{self.uri}: bucket {self.bucket!r} does not exist (NoSuchBucket)") from None
        if self.prefix:
            page = self._call(lambda: self.client.list_objects_v2(Bucket=self.bucket, Prefix=f"{self.prefix}/", MaxKeys=1), "list", "")
            if not page.get("KeyCount"):
                raise LocationNotFound(f"{self.uri}: nothing under this prefix (no such folder)")

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects under `prefix`, in UTF-8 byte order (as S3 lists them). With
        `list_concurrency` > 1 the key space is split at its common prefixes ("folders") and
        the parts are listed in parallel (see `_list_parallel`); the result is the same."""
        if self.list_concurrency <= 1:
            yield from self._list_flat(prefix)
        else:
            yield from self._list_parallel(prefix)

    def _pages(self, prefix: str, delimiter: bool) -> Iterator[dict[str, Any]]:
        """The ListObjectsV2 pages under `prefix` (relative to the store), each page's request
        retried on its own."""
        base = f"{self.prefix}/" if self.prefix else ""
        token: str | None = None
        while True:
            args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": base + prefix, "MaxKeys": self.page_size}
            if delimiter:
                args["Delimiter"] = "/"
            if token:
                args["ContinuationToken"] = token
            page = self._call(lambda: self.list_client.list_objects_v2(**args), "list", prefix)
            yield page
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated"):
                return
            if not token:  # a store that says "more" without saying where: never a silent short listing
                raise StorageError(f"{self.uri}: listing {prefix!r} was truncated without a continuation token; the store's answer is broken, try again")

    def _infos(self, page: dict[str, Any]) -> Iterator[ObjectInfo]:
        cut = len(self.prefix) + 1 if self.prefix else 0
        for obj in page.get("Contents", []):
            key = obj["Key"][cut:]
            if key and not key.endswith("/"):  # "folder" markers are no objects
                yield ObjectInfo(key, int(obj["Size"]), obj["ETag"].strip('"'))

    def _list_flat(self, prefix: str) -> Iterator[ObjectInfo]:
        for page in self._pages(prefix, delimiter=False):
            yield from self._infos(page)

    def _split(self, prefix: str) -> tuple[list[ObjectInfo], list[str]]:
        """One level under `prefix` (Delimiter "/"): the objects directly under it, complete, and
        its common prefixes (relative to the store)."""
        cut = len(self.prefix) + 1 if self.prefix else 0
        items: list[ObjectInfo] = []
        prefixes: list[str] = []
        for page in self._pages(prefix, delimiter=True):
            items.extend(self._infos(page))
            prefixes.extend(p["Prefix"][cut:] for p in page.get("CommonPrefixes", []))
        return items, prefixes

    def _list_parallel(self, prefix: str) -> Iterator[ObjectInfo]:
        """Split the key space at common prefixes, level by level (all of a level's splits at
        once), until there are `2 x list_concurrency` prefixes to list or `LIST_SPLIT_DEPTH`
        levels; then list each remaining prefix flat, `list_concurrency` at a time, and yield
        the parts in order (merge_by_prefix). Every key is read once: a split returns the keys
        directly under its prefix, complete, so a prefix without sub-prefixes costs what a
        flat listing does (and a store without "folders" is listed exactly as sequentially).
        Splitting stops early because each prefix costs at least one request: a thousand
        folders of ten photos listed one by one would cost more than the sequential listing.
        A listing is as fast as its largest prefix at the level where splitting stopped."""
        target = 2 * self.list_concurrency
        pool = ThreadPoolExecutor(self.list_concurrency, thread_name_prefix="s3-list")
        try:
            levels: dict[str, list[ObjectInfo | CommonPrefix]] = {}
            frontier = [prefix]
            for _level in range(LIST_SPLIT_DEPTH + 1):
                following: list[str] = []
                for p, (items, subs) in zip(frontier, pool.map(self._split, frontier)):
                    levels[p] = merge_by_prefix(items, subs, key=lambda o: o.key)
                    following.extend(subs)
                frontier = following
                if not frontier or len(frontier) >= target:
                    break
            flat = {p: pool.submit(lambda p=p: list(self._list_flat(p))) for p in frontier}

            def emit(p: str) -> Iterator[ObjectInfo]:
                for entry in levels[p]:
                    if not isinstance(entry, CommonPrefix):
                        yield entry
                    elif entry.prefix in levels:
                        yield from emit(entry.prefix)
                    else:
                        yield from flat[entry.prefix].result()

            yield from emit(prefix)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # a consumer that stopped early

    def read(self, key: str) -> bytes:
        k = self._key(key)
        # The body's read is inside the retried call: a reset mid-download reads it again.
        return self._call(lambda: self.client.get_object(Bucket=self.bucket, Key=k)["Body"].read(), "read", key)

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Up to `length` bytes from offset `start` (fewer at the end of the object): one ranged GET."""
        if length <= 0:
            return b""
        k, rng = self._key(key), f"bytes={start}-{start + length - 1}"

        def read() -> bytes:
            from botocore.exceptions import ClientError

            try:
                return self.client.get_object(Bucket=self.bucket, Key=k, Range=rng)["Body"].read()
            except ClientError as exc:
                if service_code(exc) == "InvalidRange":
                    return b""  # starts past the end
                raise

        return self._call(read, "read", key)

    def size(self, key: str) -> int:
        k = self._key(key)
        return int(self._call(lambda: self.client.head_object(Bucket=self.bucket, Key=k), "check", key)["ContentLength"])

    def etag(self, key: str) -> str:
        k = self._key(key)
        return str(self._call(lambda: self.client.head_object(Bucket=self.bucket, Key=k), "check", key)["ETag"]).strip('"')

    # A key the store itself refuses to hold (SeaweedFS: a file name over 255 bytes, KeyTooLongError;
    # MinIO: XMinioInvalidObjectName): that one name's fault, a failed row with the store's reason,
    # not a failed shard. Only codes that name the key: SeaweedFS's 400 InvalidRequest for `.`/`..`
    # segments never comes (validate_key refuses those first), and InvalidRequest also answers
    # what is wrong with every request (a checksum the store does not take), which must fail the
    # shard, not mark each photo a known failure.
    REFUSED_KEY_CODES = frozenset({"KeyTooLongError", "InvalidObjectName", "XMinioInvalidObjectName"})

    def _put(self, key: str, fn: Callable[[], T]) -> T:
        """A PutObject through `_call`; the store's refusal of the key as an InvalidKeyError."""
        from botocore.exceptions import ClientError

        def put() -> T:
            try:
                return fn()
            except ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if service_code(exc) in self.REFUSED_KEY_CODES and status == 400:
                    message = exc.response.get("Error", {}).get("Message") or ""
                    raise InvalidKeyError(f"{self.uri} refuses key {key!r}: {service_code(exc)}: {message}".rstrip(": ")) from None
                raise

        return self._call(put, "write", key)

    def write(self, key: str, data: bytes) -> None:
        k = self._key(key)
        # A single PUT is atomic on S3: readers see the old object or the whole new one.
        self._put(key, lambda: self.client.put_object(Bucket=self.bucket, Key=k, Body=data))

    def _conditional_put(self, key: str, data: bytes, **condition: str) -> str | None:
        from botocore.exceptions import ClientError

        k = self._key(key)

        def put() -> str | None:
            try:
                response = self.client.put_object(Bucket=self.bucket, Key=k, Body=data, **condition)
            except ClientError as exc:
                # 412: the condition failed; 409: a concurrent conditional write won the race;
                # 404: If-Match on an object that is gone.
                if service_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409", "NoSuchKey", "404"):
                    return None
                raise
            return str(response["ETag"]).strip('"')

        return self._put(key, put)

    def create(self, key: str, data: bytes) -> str | None:
        """Write `key` only if it does not exist yet (`If-None-Match: *`): its etag, or None."""
        return self._conditional_put(key, data, IfNoneMatch="*")

    # The form of the ETag in If-Match that each endpoint matches: quoted (as S3 returns it; AWS,
    # MinIO, SeaweedFS, moto) or bare (Ceph RGW 16 refuses a quoted one with 412 even when it
    # matches). Learned per endpoint on the first refusal whose object still has the etag sent.
    _if_match_bare: dict[str | None, bool] = {}

    def replace(self, key: str, data: bytes, etag: str) -> str | None:
        """Overwrite `key` only while its etag is `etag` (`If-Match`): the new etag, or None.
        A 412 on an object whose etag is still `etag` means the store wants the other form of
        the ETag (see `_if_match_bare`): the write is tried once more in that form, still
        conditional, and the form that worked is kept for the endpoint."""
        endpoint = self.client.meta.endpoint_url
        bare = S3Store._if_match_bare.get(endpoint, False)
        forms = (etag, f'"{etag}"') if bare else (f'"{etag}"', etag)
        new = self._conditional_put(key, data, IfMatch=forms[0])
        if new is not None or not etag:
            return new
        try:
            if self.etag(key) != etag:
                return None  # a real refusal: the object changed (or a retried write of ours had landed)
        except ObjectNotFound:
            return None
        new = self._conditional_put(key, data, IfMatch=forms[1])
        if new is not None:
            import logging

            S3Store._if_match_bare[endpoint] = not bare
            logging.getLogger(__name__).info("%s matches If-Match only with %s ETags", endpoint, "quoted" if bare else "unquoted")
        return new

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except ObjectNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        k = self._key(key)
        self._call(lambda: self.client.delete_object(Bucket=self.bucket, Key=k), "delete", key)


class RangeReader(io.RawIOBase):
    """A read-only, seekable file over one object's ranged reads: a Parquet reader fetches the
    footer and the row groups it needs, not the whole object (each read is one ranged GET)."""

    def __init__(self, store: ObjectStore, key: str, size: int | None = None) -> None:
        self._store, self._key = store, key
        self._size = store.size(key) if size is None else size  # known from a listing: no HEAD
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
