"""Archive manifests: list the image objects under a source and split them into shards.

The same listing always gives the same shards: keys sorted in byte order, consecutive runs of
`shard_size`. The manifest is Parquet (key, size, etag, shard) and remembers its source URI.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from colorize_core.archive.config import DEFAULT_SHARD_SIZE
from colorize_core.storage.columns import LISTED_SCHEMA, batches_of
from colorize_core.storage.imageio import IMAGE_SUFFIXES, output_name_for
from colorize_core.storage.objects import ObjectInfo, ObjectStore
from colorize_core.storage.ranges import RangeReader
from colorize_core.storage.records import MANIFEST_SCHEMA, table_from_bytes, table_metadata, table_to_bytes
from colorize_core.storage.stores import open_store, split_uri


def is_image_key(key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    return not name.startswith(".") and ("." + name.rsplit(".", 1)[-1].lower()) in IMAGE_SUFFIXES


@dataclass(frozen=True)
class ListedObject(ObjectInfo):
    """A source as the archive pipeline lists and plans it: the store's facts, and `problem`: why
    its key cannot be processed safely (`listing_table` checks every key once), or None. A shard
    turns a problem into a failed row, not a failed shard."""

    problem: str | None = None


LISTING_SCHEMA = pa.schema([MANIFEST_SCHEMA.field(name) for name in ("key", "size", "etag", "problem")])


def listing_table(store: ObjectStore, dest: ObjectStore | None = None, *, inventory: str | None = None, batch_rows: int = 1 << 16) -> pa.Table:
    """Image objects under the store (LISTING_SCHEMA), in the store's order (the names' UTF-8
    byte order; a local name that is not UTF-8 keeps its file's place), each key checked here,
    once: an object whose key cannot be read safely, or whose output (`dest`) cannot be stored
    safely, carries the reason in `problem` and becomes a failed row, never a failed shard.
    `inventory`: the URI of an S3 Inventory report's manifest.json, read instead of listing the
    store (storage/inventory.py). The listing arrives as columns (`list_batches`), is filtered
    and checked a batch at a time, and is gathered into batches of about `batch_rows`: an
    archive's listing is never one Python object per photo.

    Raises `LocationNotFound` when the store's root does not exist: a typo in a nightly job is
    an error, while an existing empty folder is an empty archive."""
    store.require_root()
    if inventory:
        from colorize_core.storage.inventory import read_inventory

        listed: Iterable[pa.RecordBatch] = batches_of(read_inventory(inventory, store), batch_rows)
    else:
        listed = store.list_batches()
    batches: list[pa.RecordBatch] = []
    pending: list[pa.RecordBatch] = []  # an S3 page is a batch of 1,000: gathered, not kept as 10,000 chunks
    rows = 0
    for batch in listed:
        images = batch.filter(image_mask(batch.column("key")))
        pending.append(images)
        rows += images.num_rows
        if rows >= batch_rows:
            batches.append(_checked(pending, store, dest))
            pending, rows = [], 0
    batches.append(_checked(pending, store, dest))
    return pa.Table.from_batches(batches, schema=LISTING_SCHEMA)


def _checked(listed: list[pa.RecordBatch], store: ObjectStore, dest: ObjectStore | None) -> pa.RecordBatch:
    """Listed batches (LISTED_SCHEMA) as one batch of LISTING_SCHEMA, each key's problem found
    (the store's own, such as a name that is not UTF-8, first)."""
    table = pa.Table.from_batches(listed, schema=LISTED_SCHEMA).combine_chunks()
    keys = table.column("key").combine_chunks()
    problems = pc.coalesce(table.column("problem").combine_chunks(), key_problems(keys, store, dest))
    return pa.RecordBatch.from_arrays([keys, table.column("size").combine_chunks(), table.column("etag").combine_chunks(), problems], schema=LISTING_SCHEMA)


# is_image_key as a regular expression: the name (after the last "/") does not start with "."
# and ends in an image suffix, after a dot or as the whole name (is_image_key takes "jpg" for a
# name with no dot at all). Exact where the part after the last "." or "/" is ASCII: the
# suffixes are ASCII, and Arrow folds ASCII case as Python does.
_IMAGE_NAME = "(?i)(^|/)([^/.][^/]*\\.)?(%s)$" % "|".join(sorted(s[1:] for s in IMAGE_SUFFIXES))
_NON_ASCII_SUFFIX = "[^\\x00-\\x7f][^./]*$"  # a character outside ASCII after the last "." or "/"


def image_mask(keys: pa.Array | pa.ChunkedArray) -> pa.Array:
    """`is_image_key` of each key, as a boolean column: in Arrow, but for keys whose suffix is
    not ASCII (Unicode case folding is Python's to say there), in Python."""
    mask = pc.match_substring_regex(keys, _IMAGE_NAME)
    other = np.flatnonzero(pc.match_substring_regex(keys, _NON_ASCII_SUFFIX).to_numpy(zero_copy_only=False))
    if not len(other):
        return mask
    values = mask.to_numpy(zero_copy_only=False).copy()
    for i in other.tolist():
        values[i] = is_image_key(keys[i].as_py())
    return pa.array(values, pa.bool_())


# A key that any store's `check_key` could refuse matches this, or is longer than SAFE_KEY_BYTES:
# a control character or a backslash, an absolute path or a drive letter, an empty, "." or ".."
# segment, or a segment of 32 characters or more (a file system's name limit, 255 bytes on most
# and 143 on the smallest in use, can be reached by 36 four-byte characters); S3's 1024 bytes
# with the prefix by SAFE_KEY_BYTES with a prefix of up to 824. Only such keys take the stores'
# exact checks, in Python (about 25 µs a key with its output's name: 25 s for a million
# photos); the rest, all but a few of an archive, cannot fail them.
_SUSPECT = r"[\x00-\x1f\x7f\\]|^/|^.:|//|(^|/)\.\.?(/|$)|/$|^$|[^/]{32,}"
SAFE_KEY_BYTES = 200
_LONG_URI = 800  # a store whose URI is this long may have a prefix that leaves less than SAFE_KEY_BYTES


def key_problems(keys: pa.Array | pa.ChunkedArray, store: ObjectStore, dest: ObjectStore | None) -> pa.Array:
    """`store.check_key(key) or dest.check_key(output_name_for(key))` for each key (a string
    column), the exact checks made only for the keys that could fail them (`_SUSPECT`)."""
    problems: list[str | None] = [None] * len(keys)
    if len(store.uri) > _LONG_URI or (dest is not None and len(dest.uri) > _LONG_URI):
        candidates: list[int] = list(range(len(keys)))
    else:
        suspect = pc.or_(pc.match_substring_regex(keys, _SUSPECT), pc.greater(pc.binary_length(keys), SAFE_KEY_BYTES))
        candidates = np.flatnonzero(suspect.to_numpy(zero_copy_only=False)).tolist()
    for i in candidates:
        key = keys[i].as_py()
        problems[i] = store.check_key(key) or (dest.check_key(output_name_for(key)) if dest is not None else None)
    return pa.array(problems, pa.string())


def objects_of(table: pa.Table) -> list[ListedObject]:
    """A listing's or plan's rows as objects: for a shard's rows, not for an archive's."""
    cols = table.select(["key", "size", "etag", "problem"]).to_pydict()
    return [ListedObject(k, s, e, p) for k, s, e, p in zip(cols["key"], cols["size"], cols["etag"], cols["problem"])]


def list_images(store: ObjectStore, dest: ObjectStore | None = None, *, inventory: str | None = None) -> list[ListedObject]:
    """`listing_table` as objects: for dataset building and tests, at thousands of photos."""
    return objects_of(listing_table(store, dest, inventory=inventory))


@dataclass(frozen=True)
class Manifest:
    source: str
    shard_size: int
    objects: list[ListedObject]

    @property
    def num_shards(self) -> int:
        return -(-len(self.objects) // self.shard_size)

    def shard(self, index: int) -> list[ListedObject]:
        return self.objects[index * self.shard_size : (index + 1) * self.shard_size]

    def to_table(self) -> pa.Table:
        return with_shards(objects_table(self.objects), self.shard_size)


def objects_table(objects: list[ListedObject]) -> pa.Table:
    return pa.table(
        {"key": [o.key for o in objects], "size": [o.size for o in objects], "etag": [o.etag for o in objects], "problem": [o.problem for o in objects]},
        schema=LISTING_SCHEMA,
    )


def with_shards(listing: pa.Table, shard_size: int) -> pa.Table:
    """A listing (LISTING_SCHEMA) as a manifest (MANIFEST_SCHEMA): row i in shard i // shard_size."""
    shard = pa.array(np.arange(listing.num_rows, dtype=np.int64) // shard_size, pa.int64()).cast(pa.int32())
    return pa.table({name: shard if name == "shard" else listing[name] for name in MANIFEST_SCHEMA.names}, schema=MANIFEST_SCHEMA)


def plan_manifest(source: str, shard_size: int = DEFAULT_SHARD_SIZE) -> Manifest:
    if shard_size <= 0:
        raise ValueError(f"shard size must be positive, got {shard_size}")
    store = open_store(source)
    return Manifest(store.uri, shard_size, list_images(store))


def write_manifest(manifest: Manifest, dest: str) -> None:
    write_plan(manifest.to_table(), manifest.source, manifest.shard_size, dest)


def write_plan(manifest: pa.Table, source: str, shard_size: int, dest: str) -> None:
    """Write a manifest table (MANIFEST_SCHEMA, e.g. `with_shards`) with one Parquet row group
    per shard, so `read_manifest_shard` reads one shard's rows only (no column statistics:
    nobody filters a manifest by them, and they double its footer)."""
    store, key = split_uri(dest)
    meta = {"source": source, "shard_size": shard_size}
    store.write(key, table_to_bytes(manifest, metadata=meta, row_group_size=shard_size, write_statistics=False))


def _manifest(uri: str, table: pa.Table) -> Manifest:
    meta = table_metadata(table)
    if "source" not in meta:
        raise ValueError(f"{uri} is not a manifest written by `colorize shard` (no source in its metadata)")
    cols = table.to_pydict()
    problems = cols.get("problem") or [None] * len(cols["key"])  # manifests before the column
    objects = [ListedObject(k, s, e, p) for k, s, e, p in zip(cols["key"], cols["size"], cols["etag"], problems)]
    return Manifest(meta["source"], int(meta["shard_size"]), objects)


def read_manifest(uri: str) -> Manifest:
    store, key = split_uri(uri)
    return _manifest(uri, table_from_bytes(store.read(key)))


def read_manifest_shard(uri: str, index: int) -> tuple[str, list[ListedObject]]:
    """(source URI, shard `index`'s objects), reading (with ranged reads on S3) the footer and
    that shard's row group only: a shard task of a million-object plan reads its few hundred rows."""
    store, key = split_uri(uri)
    with pq.ParquetFile(RangeReader(store, key)) as pf:
        header = _manifest(uri, pf.schema_arrow.empty_table())
        groups = pf.metadata.num_row_groups
        if groups == -(-pf.metadata.num_rows // header.shard_size) and 0 <= index < groups:
            return header.source, _manifest(uri, pf.read_row_group(index)).objects
    return header.source, read_manifest(uri).shard(index)  # not laid out one shard per row group


def manifest_shards(uri: str) -> int:
    """How many shards a manifest holds, from its footer alone."""
    store, key = split_uri(uri)
    with pq.ParquetFile(RangeReader(store, key)) as pf:
        header = _manifest(uri, pf.schema_arrow.empty_table())
        return -(-pf.metadata.num_rows // header.shard_size)


def is_manifest_uri(uri: str) -> bool:
    return uri.lower().endswith(".parquet")
