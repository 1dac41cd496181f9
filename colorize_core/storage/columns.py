"""A store's listing as columns: record batches of (key, size, etag), the form an archive's
listing travels in (archive/listing.py), never one Python object per photo. S3 pages are read
straight into columns (s3_list_page.py); other listings are gathered into them here."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyarrow as pa

from colorize_core.storage.objects import ObjectInfo

LISTED_SCHEMA = pa.schema([("key", pa.string()), ("size", pa.int64()), ("etag", pa.string())])


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
    return pa.RecordBatch.from_arrays([pa.array(keys, pa.string()), pa.array(sizes, pa.int64()), pa.array(etags, pa.string())], schema=LISTED_SCHEMA)


def objects_in(batch: pa.RecordBatch) -> Iterator[ObjectInfo]:
    """A batch's rows as objects: for callers that want a few, not an archive's worth."""
    columns = batch.to_pydict()
    for key, size, etag in zip(columns["key"], columns["size"], columns["etag"]):
        yield ObjectInfo(key, size, etag)
