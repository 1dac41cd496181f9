"""A store's listing as columns: record batches of (key, size, etag, problem), the form an
archive's listing travels in (archive/listing.py), never one Python object per photo. S3 pages
are read straight into columns (s3_list_page.py); other listings are gathered into them here."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyarrow as pa

from colorize_core.storage.objects import ObjectInfo

# `problem`: why the store could list the object but cannot name it safely (else null).
LISTED_SCHEMA = pa.schema([("key", pa.string()), ("size", pa.int64()), ("etag", pa.string()), ("problem", pa.string())])

# A file whose name is not UTF-8 (a folder copied from an old Windows or Mac disk, Latin-1 names):
# a key must be text, so the row shows its name with the other bytes as \xNN, and fails.
NOT_UTF8 = "its name is not UTF-8 (shown here with those bytes as \\xNN); rename the file in UTF-8 to colorize it"


def batches_of(objects: Iterable[ObjectInfo], rows: int = 1 << 16) -> Iterator[pa.RecordBatch]:
    """`objects` in batches of up to `rows`, in their order."""
    keys: list[str] = []
    sizes: list[int] = []
    etags: list[str] = []
    for o in objects:
        keys.append(o.key)
        sizes.append(o.size)
        etags.append(o.etag)
        if len(keys) >= rows:
            yield batch_of(keys, sizes, etags)
            keys, sizes, etags = [], [], []
    if keys:
        yield batch_of(keys, sizes, etags)


def batch_of(keys: list[str], sizes: list[int], etags: list[str]) -> pa.RecordBatch:
    try:
        key_column, problems = pa.array(keys, pa.string()), pa.nulls(len(keys), pa.string())
    except UnicodeEncodeError:  # a local file name with bytes that are not UTF-8 (surrogate escapes)
        named = [_shown(k) for k in keys]
        key_column, problems = pa.array([k for k, _ in named], pa.string()), pa.array([p for _, p in named], pa.string())
    return pa.RecordBatch.from_arrays([key_column, pa.array(sizes, pa.int64()), pa.array(etags, pa.string()), problems], schema=LISTED_SCHEMA)


def _shown(key: str) -> tuple[str, str | None]:
    """(the key as text, NOT_UTF8 when it had to be changed to be text)."""
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return key.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"), NOT_UTF8
    return key, None


def objects_in(batch: pa.RecordBatch) -> Iterator[ObjectInfo]:
    """A batch's rows as objects: for callers that want a few, not an archive's worth."""
    columns = batch.to_pydict()
    for key, size, etag in zip(columns["key"], columns["size"], columns["etag"]):
        yield ObjectInfo(key, size, etag)
