"""S3 and S3-compatible stores through boto3: retried calls, conditional writes (with the ETag
forms Ceph needs), listings in parallel across prefixes in the sequential listing's byte order
(their requests through s3_lister), and one client per endpoint and pool size.
`AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_S3` (MinIO, SeaweedFS, Ceph RGW) and the standard
credential chain are honoured."""

from __future__ import annotations

import bisect
import copy
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from colorize_core.storage.columns import LISTED_SCHEMA, objects_in
from colorize_core.storage.errors import RetryPolicy, call_with_retries, is_transient, service_code
from colorize_core.storage.s3_list_page import ListPage
from colorize_core.storage.s3_lister import Lister
from colorize_core.storage.objects import InvalidKeyError, LocationNotFound, ObjectInfo, ObjectNotFound, StorageError, join_key, key_problem, validate_key

T = TypeVar("T")

S3_MAX_KEY_BYTES = 1024


# S3 listing in parallel: LIST requests in flight at once (s3_lister: a connection each, no
# thread each), and how many levels of "folders" a listing splits at most to find enough
# prefixes to list side by side. 32: at 30 ms a request 16, 32 and 64 list alike on 2 cores, at
# 100 ms 32 and 64 are ~20% faster than 16 (BENCHMARKS.md); 64 asks more of a small Ceph or
# SeaweedFS for little more.
LIST_CONCURRENCY = 32
LIST_SPLIT_DEPTH = 3


@dataclass(frozen=True)
class CommonPrefix:
    """A delimiter listing's common prefix ("a/b/"): all keys under it, listed apart."""

    prefix: str


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


class _Utf8Keys(Sequence[bytes]):
    """A string column's values as UTF-8 bytes, read one at a time (for bisect)."""

    def __init__(self, column: pa.ChunkedArray) -> None:
        self.column = column

    def __len__(self) -> int:
        return len(self.column)

    def __getitem__(self, i: int) -> bytes:  # type: ignore[override]
        return _utf8(self.column[i].as_py())


def interleave_prefixes(items: pa.Table, prefixes: Sequence[str]) -> list[pa.Table | CommonPrefix]:
    """A delimiter listing's direct objects (a table with a "key" column) and common prefixes in
    the order their keys take in the full listing (UTF-8 byte order): runs of the objects, each
    prefix between them.

    Why this is exact: the keys under a prefix C are one contiguous run of the byte order, and a
    direct key k (which never starts with C) sorts before every key of that run exactly when
    k < C: either k is a proper prefix of C, or they differ inside C. So placing each prefix by
    comparing C itself with the direct keys puts every run where it belongs ("a-b" < "a/" <
    "a0": '-' < '/' < '0'). Arrow sorts strings by their bytes, so the objects are in that order."""
    ordered = items.sort_by("key") if items.num_rows > 1 else items
    keys = _Utf8Keys(ordered.column("key"))
    merged: list[pa.Table | CommonPrefix] = []
    start = 0
    for prefix in sorted(prefixes, key=_utf8):
        cut = bisect.bisect_left(keys, _utf8(prefix), lo=start)  # log n values read
        if cut > start:
            merged.append(ordered.slice(start, cut - start))
        merged.append(CommonPrefix(prefix))
        start = cut
    if start < ordered.num_rows:
        merged.append(ordered.slice(start))
    return merged


_clients: dict[tuple[object, ...], Any] = {}
_clients_lock = threading.Lock()

# Hints for errors whose fix is outside the project: what to check, named in the one line.
CREDENTIALS_HINT = "check the AWS credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE) and AWS_ENDPOINT_URL"
ENDPOINT_HINT = "check that the S3 endpoint is up and AWS_ENDPOINT_URL points at it"
CREDENTIAL_CODES = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "ExpiredToken", "InvalidToken"})


def _s3_config(max_connections: int) -> Any:
    from botocore.config import Config

    return Config(
        # One retry policy for the whole project (errors.call_with_retries): botocore's own
        # would multiply it and give up on an outage after a few seconds.
        retries={"total_max_attempts": 1},
        connect_timeout=10,
        read_timeout=60,
        max_pool_connections=max_connections,  # one connection per concurrent request
    )


def _s3_client(max_connections: int) -> Any:
    """One boto3 client per process and setting: making one costs ~100 ms, and clients are
    thread-safe; keyed by pid because a client must not cross a fork (DataLoader workers fork)."""
    key = (os.getpid(), max_connections)
    with _clients_lock:
        if key not in _clients:
            import boto3

            # boto3 reads AWS_ENDPOINT_URL(_S3), the region and credentials from the standard chain.
            _clients[key] = boto3.session.Session().client("s3", config=_s3_config(max_connections))
        return _clients[key]


def _s3_presign_client(max_connections: int, region: str | None = None) -> Any:
    """The client that presigns LIST requests (s3_lister): the shared client's settings, SigV4
    (botocore would presign with SigV2 for some endpoints; its requests are SigV4), and the
    bucket's region where a redirect named another one."""
    return _s3_presigning(max_connections, region)[0]


def _s3_presign_credentials(max_connections: int, region: str | None = None) -> Any:
    """The credentials that client signs with (botocore's, refreshed as they expire): the
    lister's own signer (s3_signer) signs with them too."""
    return _s3_presigning(max_connections, region)[1]


def _s3_presigning(max_connections: int, region: str | None) -> tuple[Any, Any]:
    key = (os.getpid(), max_connections, "presign", region)
    with _clients_lock:
        if key not in _clients:
            import boto3
            from botocore.config import Config

            config = _s3_config(max_connections).merge(Config(signature_version="s3v4"))
            session = boto3.session.Session()
            # The client and the session share one credentials object (botocore's session makes it once).
            _clients[key] = (session.client("s3", region_name=region, config=config), session.get_credentials())
        return _clients[key]  # type: ignore[no-any-return]


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
        self.retries: RetryPolicy | None = None  # None: the default (COLORIZE_RETRY_SECONDS); `with_retries`
        self.on_list_request: Callable[[dict[str, Any]], None] | None = None  # sees each LIST request's parameters

    @property
    def client(self) -> Any:
        return _s3_client(self._max_connections)

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

        return call_with_retries(attempt, f"{self.uri}: {what} {key!r}", self.retries)

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
        """Objects under `prefix`, in UTF-8 byte order (as S3 lists them): `list_batches`'s rows."""
        for batch in self.list_batches(prefix):
            yield from objects_in(batch)

    def list_batches(self, prefix: str = "") -> Iterator[pa.RecordBatch]:
        """Objects under `prefix` as columns (columns.LISTED_SCHEMA: key, size, etag, and a null
        problem), a batch a page, in UTF-8 byte order. With `list_concurrency` > 1 the key space
        is split at its common prefixes ("folders") and the parts are listed in parallel (see
        `_list_parallel`); the result is the same. The requests go out through s3_lister."""
        where = self._region_key()
        with self._lister(S3Store._bucket_regions.get(where)) as lister:
            try:
                if self.list_concurrency <= 1:
                    yield from self._list_flat(lister, prefix)
                else:
                    yield from self._list_parallel(lister, prefix)
            finally:
                if lister.region:  # learned from a redirect: the next listing signs for it at once
                    S3Store._bucket_regions[where] = lister.region

    def _region_key(self) -> tuple[str, str]:
        """(endpoint, bucket), making the client: a missing profile is a StorageError here."""
        return str(self._call(lambda: self.client.meta.endpoint_url, "list", "")), self.bucket

    def _lister(self, region: str | None = None) -> Lister:
        lister = Lister(
            lambda region: _s3_presign_client(self._max_connections, region),
            self.bucket,
            credentials=lambda region: _s3_presign_credentials(self._max_connections, region),
            concurrency=self.list_concurrency,
            error=lambda exc, prefix: self._error(exc, "list", prefix),
            policy=self.retries,
            what=self.uri,
            region=region,
            on_request=self.on_list_request,
        )
        lister.page_size = self.page_size
        return lister

    # A bucket's region where a LIST redirect named one other than the client's (s3_lister).
    _bucket_regions: dict[tuple[str, str], str] = {}

    def _chain(self, lister: Lister, prefix: str, delimiter: bool) -> Iterator[ListPage]:
        """The pages under `prefix` (relative to the store), requested from now on."""
        return lister.chain((f"{self.prefix}/" if self.prefix else "") + prefix, delimiter=delimiter, label=prefix)

    def _batch(self, page: ListPage) -> pa.RecordBatch:
        """A page's objects: keys relative to the store, "folder" markers (keys ending in "/")
        left out, ETags without their quotes."""
        keys = page.keys
        if self.prefix:
            keys = pc.utf8_slice_codeunits(keys, len(self.prefix) + 1)  # in characters, as str slicing
        batch = pa.RecordBatch.from_arrays([keys, page.sizes, pc.utf8_trim(page.etags, '"'), pa.nulls(len(keys), pa.string())], schema=LISTED_SCHEMA)
        objects = pc.and_(pc.not_equal(keys, ""), pc.invert(pc.ends_with(keys, "/")))
        return batch if pc.all(objects).as_py() else batch.filter(objects)

    def _list_flat(self, lister: Lister, prefix: str) -> Iterator[pa.RecordBatch]:
        for page in self._chain(lister, prefix, delimiter=False):
            yield self._batch(page)

    def _split(self, prefix: str, pages: Iterator[ListPage]) -> tuple[pa.Table, list[str]]:
        """One level under `prefix` (its Delimiter "/" pages): the objects directly under it,
        complete, and its common prefixes (relative to the store). A common prefix that does
        not lie under `prefix` is a broken answer: split again, it would never end."""
        cut = len(self.prefix) + 1 if self.prefix else 0
        batches: list[pa.RecordBatch] = []
        prefixes: list[str] = []
        for page in pages:
            batches.append(self._batch(page))
            prefixes.extend(p[cut:] for p in page.prefixes)
        for sub in prefixes:
            if not sub.startswith(prefix) or sub == prefix:
                raise StorageError(f"{self.uri}: listing {prefix!r} gave the common prefix {sub!r}, which is not under it; the store's answer is broken")
        return pa.Table.from_batches(batches, schema=LISTED_SCHEMA), prefixes

    def _list_parallel(self, lister: Lister, prefix: str) -> Iterator[pa.RecordBatch]:
        """Split the key space at common prefixes, level by level (all of a level's splits at
        once), until there are `2 x list_concurrency` prefixes to list or `LIST_SPLIT_DEPTH`
        levels; then list each remaining prefix flat, `list_concurrency` chains at once, and
        yield the parts in order (interleave_prefixes). Every key is read once: a split returns
        the keys directly under its prefix, complete, so a prefix without sub-prefixes costs
        what a flat listing does (and a store without "folders" is listed exactly as
        sequentially). Splitting stops early because each prefix costs at
        least one request: a thousand folders of ten photos listed one by one would cost more
        than the sequential listing. A listing is as fast as its largest prefix at the level
        where splitting stopped."""
        target = 2 * self.list_concurrency
        levels: dict[str, list[pa.Table | CommonPrefix]] = {}
        frontier = [prefix]
        for _level in range(LIST_SPLIT_DEPTH + 1):
            following: list[str] = []
            chains = [self._chain(lister, p, delimiter=True) for p in frontier]
            for p, pages in zip(frontier, chains):
                items, subs = self._split(p, pages)
                levels[p] = interleave_prefixes(items, subs)
                following.extend(subs)
            frontier = following
            if not frontier or len(frontier) >= target:
                break
        flat = {p: self._chain(lister, p, delimiter=False) for p in frontier}

        def emit(p: str) -> Iterator[pa.RecordBatch]:
            for entry in levels[p]:
                if isinstance(entry, pa.Table):
                    yield from entry.to_batches()
                elif entry.prefix in levels:
                    yield from emit(entry.prefix)
                else:
                    yield from (self._batch(page) for page in flat[entry.prefix])

        yield from emit(prefix)

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

    def with_retries(self, policy: RetryPolicy) -> S3Store:
        """This store, its calls retried under `policy` (a copy: the store itself is unchanged)."""
        other = copy.copy(self)
        other.retries = policy
        return other

    def local_path(self, key: str = "") -> None:
        return None  # not on the local disk

    def sweep_temporaries(self) -> int:
        return 0  # a PUT is whole or absent: S3 writes leave no temporaries

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
