"""Building a training set: every source photo ends as exactly one of a training row, a skip
with its reason, or a failure with its reason.

Layout under the destination:
  shards/shard-00000.parquet   training rows (records.SAMPLE_SCHEMA)
  status/shard-00000.parquet   one row per source of the shard (records.STATUS_SCHEMA)
  manifest.parquet             what was planned
  summary.json                 counts, rows per shard, failures
A shard is committed by writing its status file after its training file (each write atomic), so
a re-run after a crash skips committed shards and rebuilds the rest: no duplicate rows, and no
half-written shard is ever visible.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from colorize_core.archive.config import DEFAULT_SHARD_SIZE
from colorize_core.archive.listing import ListedObject, Manifest, is_manifest_uri, plan_manifest, read_manifest, write_manifest
from colorize_core.archive.reasons import VANISHED, unreadable_key, unsafe_key
from colorize_core.data.config import DEFAULT_SAMPLE_SIZE
from colorize_core.data.layout import MANIFEST_KEY, SHARDS_PREFIX, STATUS_PREFIX, SUMMARY_KEY, shard_key, status_key
from colorize_core.data.samples import Sample, prepare_sample
from colorize_core.storage.imageio import ImageDecodeError
from colorize_core.storage.objects import InvalidKeyError, ObjectNotFound
from colorize_core.storage.records import SAMPLE_SCHEMA, STATUS_SCHEMA, rows_to_table, table_from_bytes, table_to_bytes
from colorize_core.storage.stores import child_uri, open_store


@dataclass
class ShardResult:
    shard: int
    rows: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # by kind: gray, near-gray, tinted
    failed: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)
    reused: bool = False  # committed by an earlier run


def _result_from_status(index: int, status: list[dict[str, Any]], reused: bool) -> ShardResult:
    res = ShardResult(index, reused=reused)
    kinds: Counter[str] = Counter()
    for row in status:
        if row["status"] == "ok":
            res.rows += 1
        elif row["status"] == "skipped":
            kinds[row["reason"].split(":", 1)[0]] += 1
        else:
            res.failed.append((row["key"], row["reason"]))
    res.skipped = dict(kinds)
    return res


def build_shard(source: str, dest: str, index: int, items: list[ListedObject], size: int) -> ShardResult:
    """Build (or find already built) one training shard. Storage errors propagate (retry the
    shard); a bad image becomes a failed status row."""
    src, out = open_store(source), open_store(dest)
    planned = [(o.key, o.etag) for o in items]
    if out.exists(status_key(index)):
        status = table_from_bytes(out.read(status_key(index))).to_pylist()
        if [(r["key"], r["etag"]) for r in status] == planned and out.exists(shard_key(index)):
            return _result_from_status(index, status, reused=True)
    samples: list[dict[str, Any]] = []
    status = []
    for obj in items:
        if obj.problem:
            status.append({"key": obj.key, "etag": obj.etag, "status": "failed", "reason": unsafe_key(obj.problem)})
            continue
        try:
            result: Sample | str = prepare_sample(src.read(obj.key), obj.key, size)
        except ObjectNotFound:
            status.append({"key": obj.key, "etag": obj.etag, "status": "failed", "reason": VANISHED})
            continue
        except InvalidKeyError as exc:
            status.append({"key": obj.key, "etag": obj.etag, "status": "failed", "reason": unreadable_key(exc)})
            continue
        except ImageDecodeError as exc:
            status.append({"key": obj.key, "etag": obj.etag, "status": "failed", "reason": exc.reason})
            continue
        if isinstance(result, str):
            status.append({"key": obj.key, "etag": obj.etag, "status": "skipped", "reason": result})
            continue
        st = result.stats
        samples.append(
            {
                "key": obj.key,
                "etag": obj.etag,
                "image": result.image,
                "width": result.width,
                "height": result.height,
                "colourfulness": st.colourfulness,
                "mean_chroma": st.verdict.evidence.mean_chroma,
                "unexplained_colour": st.verdict.evidence.unexplained,
                "bw_score": st.verdict.score,
            }
        )
        status.append({"key": obj.key, "etag": obj.etag, "status": "ok", "reason": ""})
    out.write(shard_key(index), table_to_bytes(rows_to_table(samples, SAMPLE_SCHEMA), metadata={"size": size}))
    out.write(status_key(index), table_to_bytes(rows_to_table(status, STATUS_SCHEMA)))  # the commit
    return _result_from_status(index, status, reused=False)


@dataclass
class BuildSummary:
    source: str
    dest: str
    size: int
    sources: int = 0
    rows: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    shards: dict[str, int] = field(default_factory=dict)  # shard key -> rows
    reused_shards: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)


def load_manifest(source: str, shard_size: int) -> Manifest:
    return read_manifest(source) if is_manifest_uri(source) else plan_manifest(source, shard_size)


def summarise(manifest: Manifest, dest: str, size: int, results: list[ShardResult]) -> BuildSummary:
    summary = BuildSummary(manifest.source, open_store(dest).uri, size, sources=len(manifest.objects))
    skipped: Counter[str] = Counter()
    for r in sorted(results, key=lambda r: r.shard):
        summary.rows += r.rows
        skipped.update(r.skipped)
        summary.failures.extend(r.failed)
        summary.shards[shard_key(r.shard)] = r.rows
        summary.reused_shards += r.reused
    summary.skipped = dict(sorted(skipped.items()))
    summary.failed = len(summary.failures)
    return summary


def plan_build(source: str, dest: str, shard_size: int) -> tuple[Manifest, str]:
    """Plan the shards (from a listing or a manifest) and record the plan as DEST/manifest.parquet."""
    manifest = load_manifest(source, shard_size)
    uri = child_uri(dest, MANIFEST_KEY)
    write_manifest(manifest, uri)
    return manifest, uri


def finish_build(manifest: Manifest, dest: str, size: int, results: list[ShardResult]) -> BuildSummary:
    """Drop shards beyond the plan, count everything, write DEST/summary.json."""
    remove_stale_shards(dest, manifest.num_shards)
    summary = summarise(manifest, dest, size, results)
    open_store(dest).write(SUMMARY_KEY, summary.to_json().encode())
    return summary


def remove_stale_shards(dest: str, num_shards: int) -> None:
    """Shards beyond the plan (left by an earlier build of a bigger source) would duplicate rows."""
    store = open_store(dest)
    wanted = {shard_key(i) for i in range(num_shards)} | {status_key(i) for i in range(num_shards)}
    for prefix in (SHARDS_PREFIX, STATUS_PREFIX):
        for obj in store.list(prefix):
            if obj.key not in wanted:
                store.delete(obj.key)


def build_dataset(
    source: str,
    dest: str,
    *,
    size: int = DEFAULT_SAMPLE_SIZE,
    shard_size: int = DEFAULT_SHARD_SIZE,
    workers: int = 2,
    on_shard: Callable[[ShardResult], None] | None = None,
) -> BuildSummary:
    """Build every shard (in `workers` threads; Pillow decodes outside the GIL) and the summary."""
    manifest, _ = plan_build(source, dest, shard_size)
    results: list[ShardResult] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [
            pool.submit(build_shard, manifest.source, dest, i, manifest.shard(i), size) for i in range(manifest.num_shards)
        ]
        for fut in futures:
            res = fut.result()
            results.append(res)
            if on_shard is not None:
                on_shard(res)
    return finish_build(manifest, dest, size, results)
