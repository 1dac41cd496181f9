"""Parquet schemas of the project's tables and their readers and writers (bytes in, bytes out,
so any object store can hold them).

- manifest: one row per source object (key, size, etag, shard, problem); the source URI in its metadata.
- training shard: one row per training sample (source key, etag, encoded image, original size,
  colour statistics).
- build status: one row per source of a shard: ok / skipped / failed with the reason.
- colorized output: one row per source processed by a colorization run (OUTPUT_SCHEMA).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("size", pa.int64()),
        ("etag", pa.string()),
        ("shard", pa.int32()),
        ("problem", pa.string()),  # null, or why the object cannot be processed (a failed row)
    ]
)

SAMPLE_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("etag", pa.string()),
        ("image", pa.binary()),  # JPEG, size x size
        ("width", pa.int32()),  # of the source, after EXIF orientation
        ("height", pa.int32()),
        ("colourfulness", pa.float32()),
        ("mean_chroma", pa.float32()),
        ("unexplained_colour", pa.float32()),  # colorize_core/monochrome/: what made it a colour photo
        ("bw_score", pa.float32()),  # the decision's network: log-odds of black-and-white (null: gray)
    ]
)

STATUS_SCHEMA = pa.schema(
    [("key", pa.string()), ("etag", pa.string()), ("status", pa.string()), ("reason", pa.string())]
)


OUTPUT_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("source_etag", pa.string()),
        ("output_key", pa.string()),  # null unless ok
        ("model_id", pa.string()),
        ("status", pa.string()),  # ok | failed | skipped
        ("error", pa.string()),
        # Failed rows: whether the reason is permanent (the file's fault), and the tool that judged
        # so (archive/failures.py): a known failure, not retried while both the source's etag and
        # the tool are unchanged. A row skipped as colour records the black-and-white-or-colour
        # decision that judged it in `judged_by` (planning counts it as done while both are the
        # same). Null on other rows, and on every row of a file written before the columns existed
        # (those failures are retried, those colour photos judged again).
        ("permanent", pa.bool_()),
        ("judged_by", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("read_s", pa.float32()),
        ("decode_s", pa.float32()),
        ("infer_s", pa.float32()),  # this image's share of its batch
        ("encode_s", pa.float32()),  # encode and write
        ("colourfulness", pa.float32()),
        # The black-and-white-or-colour decision's figures (colorize_core/monochrome/), on ok
        # and skipped rows alike, so an operator sees why a photo was skipped as colour; null when
        # the run colorized colour photos too (--colour-photos colorize) and on older files.
        # bw_score is its network's log-odds of black-and-white (null for gray photos: not asked).
        ("mean_chroma", pa.float32()),
        ("unexplained_colour", pa.float32()),
        ("bw_score", pa.float32()),
        # Content Credentials (storage/credentials.py), when the run signs: "signed", or
        # "unsigned: <why>" for a format that cannot carry them (BMP); null when it does not sign.
        ("credentials", pa.string()),
        ("run_id", pa.string()),
        ("processed_at", pa.timestamp("ms", tz="UTC")),
    ]
)


def table_to_bytes(table: pa.Table, metadata: dict[str, Any] | None = None, **parquet_options: Any) -> bytes:
    if metadata:
        existing = table.schema.metadata or {}
        table = table.replace_schema_metadata({**existing, b"colorize": json.dumps(metadata).encode()})
    buf = io.BytesIO()
    # Encoded images are already compressed: zstd on them would burn CPU and save nothing.
    compression = {f.name: "NONE" if pa.types.is_binary(f.type) else "ZSTD" for f in table.schema}
    pq.write_table(table, buf, compression=compression, **parquet_options)
    return buf.getvalue()


def table_from_bytes(data: bytes, columns: Sequence[str] | None = None) -> pa.Table:
    return pq.read_table(io.BytesIO(data), columns=list(columns) if columns else None)


def output_table_from_bytes(data: bytes, columns: Sequence[str] | None = None) -> pa.Table:
    """A metadata file's table (OUTPUT_SCHEMA), with the columns asked for (None: all of them);
    a column that a file written before it existed lacks reads as nulls of its type."""
    parquet = pq.ParquetFile(io.BytesIO(data))
    present = parquet.schema_arrow.names
    if columns is None:
        columns = present + [name for name in OUTPUT_SCHEMA.names if name not in present]
    table = parquet.read(columns=[c for c in columns if c in present])
    for name in columns:
        if name not in present:
            table = table.append_column(OUTPUT_SCHEMA.field(name), pa.nulls(table.num_rows, OUTPUT_SCHEMA.field(name).type))
    return table.select(list(columns))


def table_metadata(table: pa.Table) -> dict[str, Any]:
    raw = (table.schema.metadata or {}).get(b"colorize")
    return json.loads(raw) if raw else {}


def rows_to_table(rows: Sequence[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=schema)

