"""An archive's listing from an AWS S3 Inventory report instead of LIST requests.

A report is a `manifest.json` (as AWS writes it: `sourceBucket`, `destinationBucket` as an ARN,
`fileFormat` CSV | ORC | Parquet, `fileSchema`, `files` [{key, size, MD5checksum}]) and data files
at those keys in the destination bucket. CSV files are gzip-compressed, have no header (the
columns are `fileSchema`'s, in order) and URL-encode their keys (form encoding: a space is `+`,
a `+` is `%2B`); ORC and Parquet files name their columns in snake case (`key`, `e_tag`,
`is_latest`) and hold keys as they are. Each data file is checked against the manifest's MD5.

A report is as old as its scan: objects written since wait for the next report.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote_plus

import pyarrow as pa
import pyarrow.compute as pc

from colorize_core.storage.objects import ObjectInfo, ObjectStore
from colorize_core.storage.s3 import S3Store
from colorize_core.storage.stores import split_uri

READ_CONCURRENCY = 8  # data files fetched at once (a 10M-object report is a few dozen files)
FORMATS = ("CSV", "ORC", "PARQUET")
_NEEDED = ("key", "size", "etag")


class InventoryError(ValueError):
    """A report that cannot be used: malformed, of another bucket, incomplete or corrupt."""


def _field(name: str) -> str:
    """One spelling for CSV's `ETag`/`IsLatest` and ORC/Parquet's `e_tag`/`is_latest`."""
    return name.strip().lower().replace("_", "")


def read_manifest_json(manifest_uri: str) -> dict[str, Any]:
    store, key = split_uri(manifest_uri)
    try:
        manifest = json.loads(store.read(key))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InventoryError(f"{manifest_uri} is not an S3 Inventory manifest.json ({exc}): point --inventory at a report's manifest.json") from None
    missing = [f for f in ("sourceBucket", "destinationBucket", "fileFormat", "files") if f not in manifest] if isinstance(manifest, dict) else []
    if not isinstance(manifest, dict) or missing or not isinstance(manifest["files"], list):
        raise InventoryError(f"{manifest_uri} is not an S3 Inventory manifest.json (no {', '.join(missing) or 'fields'}): point --inventory at a report's manifest.json")
    if str(manifest["fileFormat"]).upper() not in FORMATS:
        raise InventoryError(f"{manifest_uri}: inventory format {manifest['fileFormat']!r} is not supported: configure the report as CSV, ORC or Parquet")
    return manifest


def _bucket_of(arn: str) -> str:
    """`arn:aws:s3:::bucket` (or a bare name) -> `bucket`."""
    return arn.rsplit(":::", 1)[-1] if arn.startswith("arn:") else arn


def _csv_table(data: bytes, schema: str) -> pa.Table:
    import pyarrow.csv as pacsv

    names = [_field(n) for n in schema.split(",")]
    text = gzip.decompress(data)
    options = pacsv.ReadOptions(column_names=names, block_size=1 << 24)
    convert = pacsv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=False, quoted_strings_can_be_null=False)
    table = pacsv.read_csv(io.BytesIO(text), read_options=options, convert_options=convert)
    if "key" not in names:
        return table  # _current names what is missing
    # Form decoding: `+` is a space (every key of a "box 0001" folder), then %XX escapes, which
    # only keys with a `%` need: decoded in Python, the rest in Arrow.
    keys = pc.replace_substring(table.column("key"), "+", " ")
    escaped = pc.match_substring(keys, "%")
    if pc.any(escaped).as_py():
        decoded = [unquote_plus(k) if e else k for k, e in zip(keys.to_pylist(), escaped.to_pylist())]
        keys = pa.chunked_array([pa.array(decoded, pa.string())])
    return table.set_column(names.index("key"), "key", keys)


def _columnar_table(data: bytes, file_format: str) -> pa.Table:
    if file_format == "ORC":
        import pyarrow.orc as orc

        table = orc.ORCFile(pa.BufferReader(data)).read()
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(pa.BufferReader(data))
    return table.rename_columns([_field(n) for n in table.column_names])


def _is_true(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_boolean(column.type):
        return pc.fill_null(column, False)
    return pc.equal(pc.utf8_lower(pc.cast(column, pa.string())), "true")


def _current(table: pa.Table, where: str) -> pa.Table:
    """Current objects only, with (key, size, etag): a version that is not the latest, or a
    delete marker, is no object a GET would return."""
    missing = [n for n in _NEEDED if n not in table.column_names]
    if missing:
        raise InventoryError(f"{where} has no {', '.join(missing)} column: configure the inventory with the Size and ETag fields")
    keep = None
    if "islatest" in table.column_names:
        keep = _is_true(table.column("islatest"))
    if "isdeletemarker" in table.column_names:
        live = pc.invert(_is_true(table.column("isdeletemarker")))
        keep = live if keep is None else pc.and_(keep, live)
    if keep is not None:
        table = table.filter(keep)
    return pa.table(
        {"key": pc.cast(table.column("key"), pa.string()), "size": pc.cast(table.column("size"), pa.int64()), "etag": pc.cast(table.column("etag"), pa.string())}
    )


def _data_file(bucket: S3Store, entry: dict[str, Any], file_format: str, schema: str) -> pa.Table:
    where = f"s3://{bucket.bucket}/{entry['key']}"
    data = bucket.read(entry["key"])
    digest = hashlib.md5(data).hexdigest()
    if digest != str(entry.get("MD5checksum", "")).lower():
        raise InventoryError(f"inventory data file {where}: MD5 {digest} differs from the manifest's {entry.get('MD5checksum')}: the report is incomplete or corrupt; use another report or list without --inventory")
    try:
        table = _csv_table(data, schema) if file_format == "CSV" else _columnar_table(data, file_format)
    except (pa.ArrowInvalid, OSError, EOFError) as exc:  # not gzip, not ORC/Parquet, or not the manifest's format
        raise InventoryError(f"inventory data file {where} cannot be read as {file_format} ({exc}): use another report or list without --inventory") from None
    return _current(table, where)


def read_inventory(manifest_uri: str, source: ObjectStore) -> Iterator[ObjectInfo]:
    """The current objects under `source` (an `s3://bucket/prefix` store) that the report lists,
    keys relative to it, in UTF-8 byte order: what `source.list()` would have answered when the
    report was made. The report is read and checked whole before the first object comes; the
    objects come a slice at a time (never ten million Python objects at once)."""
    return _objects(_inventory_table(manifest_uri, source))


def _objects(table: pa.Table) -> Iterator[ObjectInfo]:
    for start in range(0, table.num_rows, 1 << 16):
        part = table.slice(start, 1 << 16)
        yield from (ObjectInfo(k, s, e.strip('"')) for k, s, e in zip(part.column("key").to_pylist(), part.column("size").to_pylist(), part.column("etag").to_pylist()))


def _inventory_table(manifest_uri: str, source: ObjectStore) -> pa.Table:
    if not isinstance(source, S3Store):
        raise InventoryError(f"an S3 Inventory lists an S3 bucket, and the source {source.uri} is not one: give an s3:// SOURCE or leave out --inventory")
    manifest = read_manifest_json(manifest_uri)
    if manifest["sourceBucket"] != source.bucket:
        raise InventoryError(f"{manifest_uri} is an inventory of bucket {manifest['sourceBucket']!r}, not of {source.uri}: use that bucket's report")
    file_format = str(manifest["fileFormat"]).upper()
    bucket = S3Store(_bucket_of(str(manifest["destinationBucket"])))
    with ThreadPoolExecutor(READ_CONCURRENCY, thread_name_prefix="inventory") as pool:
        parts = list(pool.map(lambda entry: _data_file(bucket, entry, file_format, str(manifest.get("fileSchema", ""))), manifest["files"]))
    if not parts:
        return pa.table({"key": pa.array([], pa.string()), "size": pa.array([], pa.int64()), "etag": pa.array([], pa.string())})
    table = pa.concat_tables(parts)
    base = f"{source.prefix}/" if source.prefix else ""
    if base:
        table = table.filter(pc.starts_with(table.column("key"), base))
        table = table.set_column(0, "key", pc.utf8_slice_codeunits(table.column("key"), len(base)))
    keys = table.column("key")
    table = table.filter(pc.and_(pc.not_equal(keys, ""), pc.invert(pc.ends_with(keys, "/"))))  # folder markers, as list() drops them
    # Arrow compares strings as bytes: the UTF-8 byte order S3 lists in.
    return table.take(pc.sort_indices(table, sort_keys=[("key", "ascending")]))
