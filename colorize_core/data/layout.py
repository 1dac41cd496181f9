"""Where things lie in a build-dataset destination (the training set): defined once, here.

  shards/shard-NNNNN.parquet       training rows
  status/shard-NNNNN.parquet       one row per source of the shard (the shard's commit)
  manifest.parquet                 what was planned
  summary.json                     counts, rows per shard, failures

A colorize-archive destination's layout is archive/layout.py's.
"""

from __future__ import annotations

SHARDS_PREFIX = "shards/"
STATUS_PREFIX = "status/"
MANIFEST_KEY = "manifest.parquet"
SUMMARY_KEY = "summary.json"


def shard_key(index: int) -> str:
    return f"{SHARDS_PREFIX}shard-{index:05d}.parquet"


def status_key(index: int) -> str:
    return f"{STATUS_PREFIX}shard-{index:05d}.parquet"
