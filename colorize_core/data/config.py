"""The data stage's defaults, defined once and free of heavy imports (the command line offers
them without importing torch or pyarrow)."""

from __future__ import annotations

DEFAULT_SHARD_SIZE = 500  # images per shard: one task's work, one metadata file per run
DEFAULT_SAMPLE_SIZE = 256  # side of the square training samples build-dataset stores
