"""Shards claimed by the workers of a run on a work pool: each worker (one flow run per GPU,
which loads the model once) works through the plan, taking each shard it can claim.

A claim is an object created only if it does not exist yet (`ObjectStore.create`: `If-None-Match:
*` on S3, an exclusive create locally), the same conditional write the destination's lease
rests on (lease.py checks that the store honours it), so two workers never take one shard. Why
claims and not Prefect's task workers (`.delay()`): a task worker runs tasks from a queue but
keeps no record the parent can read of which shard a dead worker held, and its task runs hold
their parameters and results in Prefect's database; claims live beside the plan in the
destination, cost one PUT a shard, and need nothing but the store. A worker that dies leaves its
claimed shard undone (no last metadata part): the run reports it, and the next run plans it
again, less the parts it had committed (shards.py).
"""

from __future__ import annotations

import os

from colorize_core.archive.layout import claim_key, claims_prefix
from colorize_core.storage.procs import this_host
from colorize_core.storage.stores import open_store


def claim(dest: str, run_id: str, shard: int) -> bool:
    """Take shard `shard` of run `run_id` for this process: False if someone has it."""
    return open_store(dest).create(claim_key(run_id, shard), f"{this_host()} {os.getpid()}".encode()) is not None


def claim_order(first: int, shards: int) -> list[int]:
    """The shards a worker tries, from `first` round to the one before it: workers started at
    evenly spread shards seldom try the same one at once."""
    return [(first + i) % shards for i in range(shards)] if shards else []


def drop_claims(dest: str, run_id: str) -> int:
    """Delete a finished run's claims; returns how many there were."""
    store = open_store(dest)
    keys = [o.key for o in store.list(claims_prefix(run_id))]
    for key in keys:
        store.delete(key)
    return len(keys)
