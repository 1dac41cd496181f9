"""The `shard-archive` and `build-dataset` flows: the storage layer's operations as flow runs,
one task per shard, so rebuilding a training set from an S3 bucket is one run in the UI.

Run: `colorize shard SOURCE --manifest DEST`, `colorize build-dataset SOURCE --dest DEST`.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from colorize_core.archive.config import DEFAULT_SHARD_SIZE
from colorize_core.archive.listing import plan_manifest, read_manifest, read_manifest_shard, write_manifest
from colorize_core.archive.markup import markdown_code
from colorize_core.data.build import BuildSummary, ShardResult, build_shard, finish_build, plan_build
from colorize_core.data.config import DEFAULT_SAMPLE_SIZE
from flows.retries import RETRIES, RETRY_DELAYS, retry_on_transient_errors

storage_task = task(retries=RETRIES, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_on_transient_errors)


@storage_task
def write_archive_manifest(source: str, manifest: str, shard_size: int) -> dict[str, int]:
    plan = plan_manifest(source, shard_size)
    write_manifest(plan, manifest)
    return {"images": len(plan.objects), "shards": plan.num_shards}


@flow(name="shard-archive", log_prints=True)
def shard_archive(source: str, manifest: str, shard_size: int = DEFAULT_SHARD_SIZE) -> dict[str, int]:
    """List the images under `source` into a Parquet manifest of shards."""
    return write_archive_manifest(source, manifest, shard_size)


@storage_task
def plan_dataset(source: str, dest: str, shard_size: int) -> dict[str, Any]:
    manifest, uri = plan_build(source, dest, shard_size)
    return {"manifest": uri, "shards": manifest.num_shards, "sources": len(manifest.objects)}


@storage_task
def build_shard_task(manifest: str, dest: str, shard: int, size: int) -> ShardResult:
    source, items = read_manifest_shard(manifest, shard)  # this shard's rows only
    return build_shard(source, dest, shard, items, size)


@storage_task
def finish_dataset(manifest: str, dest: str, size: int, results: list[ShardResult]) -> BuildSummary:
    return finish_build(read_manifest(manifest), dest, size, results)


@flow(name="build-dataset", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=2))
def build_dataset_flow(source: str, dest: str, size: int = DEFAULT_SAMPLE_SIZE, shard_size: int = DEFAULT_SHARD_SIZE) -> BuildSummary:
    """Build Parquet training shards from the colour photos under `source` (or a manifest)."""
    logger = get_run_logger()
    plan = plan_dataset(source, dest, shard_size)
    n = plan["shards"]
    logger.info("%d sources in %d shards -> %s", plan["sources"], n, dest)
    progress = create_progress_artifact(0.0, key="build-dataset-progress", description=f"{n} shards")
    futures = [build_shard_task.submit(plan["manifest"], dest, i, size) for i in range(n)]
    results: list[ShardResult] = []
    for fut in as_completed(futures):
        results.append(fut.result())
        update_progress_artifact(progress, 100.0 * len(results) / max(n, 1))
    summary = finish_dataset(plan["manifest"], dest, size, results)
    table = [{"outcome": "rows", "count": summary.rows}, {"outcome": "failed", "count": summary.failed}]
    table += [{"outcome": f"skipped: {k}", "count": v} for k, v in summary.skipped.items()]
    # The UI renders table cells and the description as markdown: keys, reasons and the path
    # (anyone's text) go in code spans (colorize_core/archive/markup.py).
    table += [{"outcome": f"failed: {markdown_code(key)}", "count": markdown_code(reason)} for key, reason in summary.failures[:200]]
    create_table_artifact(table, key="build-dataset-counts", description=f"{summary.sources} sources -> {markdown_code(dest)}")
    return summary
