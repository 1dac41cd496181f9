"""Archive manifests: list the image objects under a source and split them into shards.

The same listing always gives the same shards: keys sorted in byte order, consecutive runs of
`shard_size`. The manifest is Parquet (key, size, etag, shard) and remembers its source URI.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import pyarrow as pa
import pyarrow.parquet as pq

from colorize_core.data.config import DEFAULT_SHARD_SIZE
from colorize_core.storage.imageio import IMAGE_SUFFIXES, output_name_for
from colorize_core.storage.records import MANIFEST_SCHEMA, table_from_bytes, table_metadata, table_to_bytes
from colorize_core.storage.stores import ObjectInfo, ObjectStore, RangeReader, open_store, split_uri


def is_image_key(key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    return not name.startswith(".") and ("." + name.rsplit(".", 1)[-1].lower()) in IMAGE_SUFFIXES


def list_images(store: ObjectStore, dest: ObjectStore | None = None, *, inventory: str | None = None) -> list[ObjectInfo]:
    """Image objects under the store, sorted by key, each key checked here, once: an object
    whose key cannot be read safely, or whose output (`dest`) cannot be stored safely, carries
    the reason in `problem` and becomes a failed row, never a failed shard. `inventory`: the
    URI of an S3 Inventory report's manifest.json, read instead of listing the store
    (storage/inventory.py).

    Raises `LocationNotFound` when the store's root does not exist: a typo in a nightly job is
    an error, while an existing empty folder is an empty archive."""
    store.require_root()
    if inventory:
        from colorize_core.storage.inventory import read_inventory

        objects: Iterable[ObjectInfo] = read_inventory(inventory, store)
    else:
        objects = store.list()
    listed = []
    for o in objects:
        if is_image_key(o.key):
            problem = store.check_key(o.key) or (dest.check_key(output_name_for(o.key)) if dest is not None else None)
            listed.append(replace(o, problem=problem) if problem else o)
    return listed


@dataclass(frozen=True)
class Manifest:
    source: str
    shard_size: int
    objects: list[ObjectInfo]

    @property
    def num_shards(self) -> int:
        return -(-len(self.objects) // self.shard_size)

    def shard(self, index: int) -> list[ObjectInfo]:
        return self.objects[index * self.shard_size : (index + 1) * self.shard_size]

    def to_table(self) -> pa.Table:
        return pa.table(
            {
                "key": [o.key for o in self.objects],
                "size": [o.size for o in self.objects],
                "etag": [o.etag for o in self.objects],
                "shard": [i // self.shard_size for i in range(len(self.objects))],
                "problem": [o.problem for o in self.objects],
            },
            schema=MANIFEST_SCHEMA,
        )


def plan_manifest(source: str, shard_size: int = DEFAULT_SHARD_SIZE) -> Manifest:
    if shard_size <= 0:
        raise ValueError(f"shard size must be positive, got {shard_size}")
    store = open_store(source)
    return Manifest(store.uri, shard_size, list_images(store))


def write_manifest(manifest: Manifest, dest: str) -> None:
    """One Parquet row group per shard, so `read_manifest_shard` reads one shard's rows only
    (no column statistics: nobody filters a manifest by them, and they double its footer)."""
    store, key = split_uri(dest)
    meta = {"source": manifest.source, "shard_size": manifest.shard_size}
    table = manifest.to_table()
    store.write(key, table_to_bytes(table, metadata=meta, row_group_size=manifest.shard_size, write_statistics=False))


def _manifest(uri: str, table: pa.Table) -> Manifest:
    meta = table_metadata(table)
    if "source" not in meta:
        raise ValueError(f"{uri} is not a manifest written by `colorize shard` (no source in its metadata)")
    cols = table.to_pydict()
    problems = cols.get("problem") or [None] * len(cols["key"])  # manifests before the column
    objects = [ObjectInfo(k, s, e, p) for k, s, e, p in zip(cols["key"], cols["size"], cols["etag"], problems)]
    return Manifest(meta["source"], int(meta["shard_size"]), objects)


def read_manifest(uri: str) -> Manifest:
    store, key = split_uri(uri)
    return _manifest(uri, table_from_bytes(store.read(key)))


def read_manifest_shard(uri: str, index: int) -> tuple[str, list[ObjectInfo]]:
    """(source URI, shard `index`'s objects), reading (with ranged reads on S3) the footer and
    that shard's row group only: a shard task of a million-object plan reads its few hundred rows."""
    store, key = split_uri(uri)
    with pq.ParquetFile(RangeReader(store, key)) as pf:
        header = _manifest(uri, pf.schema_arrow.empty_table())
        groups = pf.metadata.num_row_groups
        if groups == -(-pf.metadata.num_rows // header.shard_size) and 0 <= index < groups:
            return header.source, _manifest(uri, pf.read_row_group(index)).objects
    return header.source, read_manifest(uri).shard(index)  # not laid out one shard per row group


def is_manifest_uri(uri: str) -> bool:
    return uri.lower().endswith(".parquet")
