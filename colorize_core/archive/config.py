"""An archive's shard sizes, defined once and free of heavy imports (the command line offers
them without importing torch or pyarrow). Dataset building shards its listing the same way."""

from __future__ import annotations

DEFAULT_SHARD_SIZE = 500  # images per shard: one task's work, one metadata file per run
# An archive's shard on CUDA: at the goal of 2,000 photos/s, 500 photos would be a quarter second
# of GPU work for ~33 ms of orchestration (13%); 10,000 are ~5 s of it (under 1%), and the
# shard still commits its rows every few hundred photos (archive/shards.py), so a crash loses
# little of it.
CUDA_SHARD_SIZE = 10_000
