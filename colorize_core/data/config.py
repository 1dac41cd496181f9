"""The data stage's defaults (shard sizes are archive/config.py's), defined once and free of heavy imports (the command line offers
them without importing torch or pyarrow)."""

from __future__ import annotations

DEFAULT_SAMPLE_SIZE = 256  # side of the square training samples build-dataset stores
