"""Where things lie in a colorize-archive destination, and what a run id is: defined once, here.

A colorize-archive destination (DEST):
  <key of each source>             the colorized photo (same relative key; GIF becomes PNG)
  _colorize/metadata/              one Parquet file per shard per run (a long shard's earlier
                                   parts beside it), and compacted files
  _colorize/plans/<run id>.parquet what a run planned, one row group per shard
  _colorize/claims/<run id>/NNNNN  which worker of a run on a work pool took each shard (claims.py)
  _colorize/lease.json             the run holding DEST now (lease.py)
  _colorize/gallery.html           before / after page of the latest run

A build-dataset destination's layout is data/layout.py's (the training data's own).

A run id is `<UTC start, YYYYmmddTHHMMSS>-<8 hex>`: it sorts by start time, and compaction and
plan pruning read a run's age from it (`run_started`).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from colorize_core.storage.stores import open_store

# colorize-archive destinations
META_PREFIX = "_colorize/metadata/"
PLANS_PREFIX = "_colorize/plans/"
CLAIMS_PREFIX = "_colorize/claims/"
COMPACTED = "compacted-"  # metadata files that fold finished runs' files into one
LEASE_KEY = "_colorize/lease.json"
GALLERY_KEY = "_colorize/gallery.html"

RUN_TIME_FORMAT = "%Y%m%dT%H%M%S"
_STAMP_LEN = len("20260101T000000")


def new_run_id(now: datetime | None = None) -> str:
    return f"{(now or datetime.now(timezone.utc)).strftime(RUN_TIME_FORMAT)}-{uuid.uuid4().hex[:8]}"


def run_started(key: str) -> datetime | None:
    """The start time in the run id that begins a metadata or plan key's name (after
    `_colorize/<kind>/`), or None (compacted files, run ids of other forms)."""
    name = key.split("/", 2)[-1]
    try:
        return datetime.strptime(name[:_STAMP_LEN], RUN_TIME_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def metadata_key(run_id: str, shard: int, part: int | None = None) -> str:
    """A shard's metadata file: its last (or only) part is `...-shard-NNNNN.parquet`; the parts
    a long shard commits before it (every few hundred photos, shards.py) are `.pMMMM` before it."""
    return f"{META_PREFIX}{run_id}-shard-{shard:05d}{'' if part is None else f'.p{part:04d}'}.parquet"


def shard_of(key: str) -> int:
    """The shard number in a `metadata_key`, part or not."""
    return int(key.rsplit("-shard-", 1)[1].split(".", 1)[0])


def compacted_key(now: datetime) -> str:
    return f"{META_PREFIX}{COMPACTED}{new_run_id(now)}.parquet"


def plan_key(run_id: str) -> str:
    return f"{PLANS_PREFIX}{run_id}.parquet"


def claims_prefix(run_id: str) -> str:
    return f"{CLAIMS_PREFIX}{run_id}/"


def claim_key(run_id: str, shard: int) -> str:
    return f"{claims_prefix(run_id)}{shard:05d}"


def overlap(source: str, dest: str) -> str | None:
    """Why an archive's `dest` cannot be where it is relative to its `source` ("is the source",
    "is inside the source", "holds the source"), or None when neither holds the other. Outputs
    keep the sources' keys, so outputs under the source would be listed as new photos by the
    next run, and a source under the destination could be overwritten by an output
    (`archive DEST/bw --dest DEST`: the output of `bw/x.jpg` is `DEST/bw/x.jpg`). Locations are
    compared as their stores name them (resolved paths, s3://bucket/prefix); a scheme no store
    supports is a ValueError."""
    src, out = open_store(source).uri.rstrip("/"), open_store(dest).uri.rstrip("/")
    if out == src:
        return "is the source"
    if out.startswith(src + "/"):
        return "is inside the source"
    if src.startswith(out + "/"):
        return "holds the source"
    return None
