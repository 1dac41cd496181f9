"""The `colorize-archive` flow: list an archive, plan shards of what is not done yet, colorize
one task per shard (threads on one machine, or one flow run per shard on a work pool), report.

Run: `colorize archive SOURCE --dest DEST [--checkpoint FILE|latest]`, or as a deployment.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.context import FlowRunContext
from prefect.events import emit_event
from prefect.futures import as_completed, wait
from prefect.states import Completed, State
from prefect.task_runners import ThreadPoolTaskRunner

from colorize_core.archive.gallery import gallery_html, gallery_markdown
from colorize_core.archive.history import compact_history, prune_plans
from colorize_core.archive.layout import GALLERY_KEY, new_run_id, plan_key
from colorize_core.archive.lease import Lease
from colorize_core.archive.shards import ShardOutcome, colorize_shard, plan_archive, run_outcomes, shared_colorizer
from colorize_core.data.sharding import DEFAULT_SHARD_SIZE, Manifest, read_manifest_shard, write_manifest
from colorize_core.model.checkpoint import read_checkpoint_info, require_trained
from colorize_core.model.device import resolve_device
from colorize_core.storage.errors import Interrupted, forget_run, run_stop
from colorize_core.storage.stores import LocalStore, child_uri, open_store
from colorize_core.training.registry import resolve_checkpoint
from flows.retries import RETRIES, RETRY_DELAYS, retry_on_transient_errors

GPU_LIMIT = "gpu"  # global concurrency limit held by each shard task on CUDA

# What a run shows in the Prefect UI and tells automations (README "What the UI shows", "Alerts").
COUNTS_KEY = "colorize-counts"  # table artifact: rows {status, count}
FAILURES_KEY = "colorize-failures"  # table artifact: rows {source, reason}; made every run, empty when clean
FINISHED_EVENT = "colorize.archive.finished"  # emitted once per completed run; see _emit_finished
OUTCOME_LABEL = "colorize.outcome"  # the event resource's label: "failures" or "clean"
MAX_FAILURE_ROWS = 1000  # rows in the failures table
MAX_FAILURE_LOGS = 50  # failed sources logged one per line as warnings
MAX_EVENT_FAILURES = 10  # failed sources in the event's payload (for the notification's text)
MAX_REASON_CHARS = 500


def plan_uri(dest: str, run_id: str) -> str:
    return child_uri(dest, plan_key(run_id))


@task(retries=RETRIES, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_on_transient_errors)
def compact_metadata(dest: str, min_files: int = 64) -> dict[str, Any]:
    """Fold finished runs' metadata files into one, once there are `min_files` of them (planning
    reads the whole history every run, and a nightly schedule makes thousands of small files),
    delete finished runs' plans, and sweep the temporary files a killed run left behind."""
    logger = get_run_logger()
    result = compact_history(dest, min_files=min_files)
    if result.key:
        logger.info("folded %d metadata files (%d rows) into %s", result.files, result.rows, result.key)
    pruned = prune_plans(dest)
    out = open_store(dest)
    swept = out.sweep_temporaries() if isinstance(out, LocalStore) else 0  # S3 writes leave none
    if swept:
        logger.info("removed %d temporary files left by an interrupted run", swept)
    return {"compacted": result.key, "files": result.files, "rows": result.rows, "plans_pruned": pruned, "temporaries_swept": swept}


@task(retries=RETRIES, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_on_transient_errors)
def plan_shards(source: str, dest: str, model_id: str, shard_size: int, run_id: str) -> dict[str, Any]:
    """List the source, drop what already has an ok row for this model, write the plan."""
    plan = plan_archive(source, dest, model_id, shard_size)
    write_manifest(Manifest(plan.source, shard_size, plan.todo), plan_uri(dest, run_id))
    return {"model_id": model_id, "todo": len(plan.todo), "already_done": plan.already_done, "shards": plan.num_shards}


@task(retries=RETRIES, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_on_transient_errors)
def colorize_shard_task(
    plan: str, shard: int, dest: str, checkpoint: str, run_id: str, device: str = "auto", batch_size: int | None = None, label: bool = True
) -> dict[str, Any]:
    """Colorize one shard of a plan. Object-store calls retry transient errors themselves; what
    still fails (an outage longer than the retry budget, a full disk) fails the task, and the
    next run redoes the shard."""
    source, items = read_manifest_shard(plan, shard)  # this shard's rows only, not a million-row plan
    colorizer = shared_colorizer(checkpoint, device, batch_size)
    gpu = colorizer.device.type == "cuda"
    if gpu:
        from prefect.concurrency.sync import concurrency

        slot = concurrency(GPU_LIMIT, occupy=1, strict=True)
    else:
        slot = nullcontext()
    with slot:
        outcome = colorize_shard(source, dest, items, colorizer, run_id=run_id, shard=shard, label=label)
    return _outcome_dict(outcome)


def _outcome_dict(o: ShardOutcome) -> dict[str, Any]:
    return {"shard": o.shard, "counts": o.counts, "failures": o.failures, "samples": o.samples, "seconds": o.seconds}


@flow(name="colorize-shard", log_prints=True)
def colorize_shard_flow(
    plan: str, shard: int, dest: str, checkpoint: str, run_id: str, device: str = "auto", batch_size: int | None = None, label: bool = True
) -> dict[str, Any]:
    """One shard as its own flow run: what a work-pool worker (one GPU per pod) runs."""
    return colorize_shard_task(plan, shard, dest, checkpoint, run_id, device, batch_size, label)


def ensure_gpu_limit(slots: int | None = None) -> int:
    """Create the `gpu` global concurrency limit if it does not exist (one slot per visible GPU);
    returns its limit. Shard tasks on CUDA acquire it strictly."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return int(client.read_global_concurrency_limit_by_name(GPU_LIMIT).limit)
        except ObjectNotFound:
            import torch

            limit = slots or max(1, torch.cuda.device_count())
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=GPU_LIMIT, limit=limit))
            return limit


def _run_shards_on_pool(
    deployment: str, plan: str, n: int, dest: str, checkpoint: str, run_id: str, device: str, batch_size: int | None, label: bool, on_done: Callable[[int], None]
) -> list[dict[str, Any]]:
    """One flow run per shard on the deployment's work pool; outcomes come back through the
    shards' metadata files in object storage, not through Prefect results (which live on the
    worker's machine)."""
    from prefect.deployments import run_deployment

    params = {"plan": plan, "dest": dest, "checkpoint": checkpoint, "run_id": run_id, "device": device, "batch_size": batch_size}
    if not label:  # only when not the default: a shard deployment registered before `label` existed still takes the rest
        params["label"] = False
    # timeout=0 submits without waiting, so the pool's workers run the shards in parallel.
    runs = [run_deployment(deployment, parameters={**params, "shard": s}, timeout=0) for s in range(n)]
    failed = _wait_for_runs([r.id for r in runs], on_done)
    if failed:
        raise RuntimeError(f"{len(failed)} of {n} shard flow runs did not complete: {', '.join(failed)}; re-run to finish them")
    return [_outcome_dict(o) for o in run_outcomes(dest, run_id)]


def _wait_for_runs(run_ids: list[Any], on_done: Callable[[int], None], poll_s: float = 2.0, timeout_s: float = 24 * 3600.0) -> list[str]:
    """Wait until every flow run is final, reporting how many are; returns "name (state)" of
    those that did not complete."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout_s
    finals: dict[Any, Any] = {}
    with get_client(sync_client=True) as client:
        while len(finals) < len(run_ids):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(run_ids) - len(finals)} shard flow runs did not finish in {timeout_s:.0f}s")
            for rid in run_ids:
                if rid not in finals:
                    run = client.read_flow_run(rid)
                    if run.state is not None and run.state.is_final():
                        finals[rid] = run
                        on_done(len(finals))
            if len(finals) < len(run_ids):
                time.sleep(poll_s)
    return [f"{r.name} ({r.state.name})" for r in finals.values() if not r.state.is_completed()]


def _gallery(dest: str, source: str, samples: list[tuple[str, str]], title: str) -> None:
    if not samples:
        return
    src, out = open_store(source), open_store(dest)
    pairs = [(key, src.read(key), out.read(out_key)) for key, out_key in samples[:6]]
    create_markdown_artifact(gallery_markdown(pairs, title), key="colorize-gallery", description=title)
    out.write(GALLERY_KEY, gallery_html(pairs, title).encode())


@flow(name="colorize-archive", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=2))
def colorize_archive(
    source: str,
    dest: str,
    checkpoint: str = "latest",
    shard_size: int = DEFAULT_SHARD_SIZE,
    device: str = "auto",
    batch_size: int | None = None,  # None: 8 on CPU, 64 on CUDA
    deployment: str | None = None,
    registry: str | None = None,
    wait_s: float = 0.0,
    allow_untrained: bool = False,
    label: bool = True,
) -> dict[str, Any]:
    """Colorize everything under `source` not yet done with this model into `dest`.

    `deployment` ("colorize-shard/<name>"): run each shard as its own flow run on that
    deployment's work pool instead of in this process's threads.
    One run per destination at a time: a second one fails with DestinationBusy naming the
    first, or waits up to `wait_s` seconds for it to finish.
    A model that never trained (0 steps) is refused unless `allow_untrained`.
    `label`: each output's metadata says a trained model colorized it (IPTC DigitalSourceType
    compositeWithTrainedAlgorithmicMedia, the model id, the source key) and keeps the source's EXIF."""
    run_id = new_run_id()
    checkpoint = resolve_checkpoint(checkpoint, registry=registry)
    info = read_checkpoint_info(checkpoint)
    require_trained(info, allow_untrained=allow_untrained)
    steps = "unknown" if info.step is None else info.step
    get_run_logger().info("model %s (%s training steps) from %s", info.model_id, steps, checkpoint)
    try:
        with Lease(dest, run_id, wait_s=wait_s) as lease:
            try:
                summary = _colorize(source, dest, checkpoint, info.model_id, shard_size, device, batch_size, deployment, run_id, label)
            except Interrupted:
                if lease.lost:
                    raise RuntimeError(f"{dest}: another run took over this run's lease (it stopped renewing it); check `colorize status {dest}`") from None
                raise
    finally:
        forget_run(run_id)
    # A returned State is the run's final state; whoever called the flow still gets the summary
    # dict (Prefect unwraps the state's data), and `return_state=True` gets this state.
    return _final_state(summary)  # type: ignore[return-value]


def _colorize(
    source: str, dest: str, checkpoint: str, model_id: str, shard_size: int, device: str, batch_size: int | None, deployment: str | None, run_id: str, label: bool
) -> dict[str, Any]:
    logger = get_run_logger()
    compact_metadata(dest)
    plan = plan_shards(source, dest, model_id, shard_size, run_id)
    logger.info("model %s: %d to do, %d already done, %d shards", plan["model_id"], plan["todo"], plan["already_done"], plan["shards"])
    plan_file = plan_uri(dest, run_id)
    n = plan["shards"]
    outcomes: list[dict[str, Any]] = []
    if n:
        progress = create_progress_artifact(0.0, key="colorize-progress", description=f"{n} shards of {plan['todo']} images")

        def shards_done(done: int) -> None:
            update_progress_artifact(progress, 100.0 * done / n)

        if deployment:
            outcomes = _run_shards_on_pool(deployment, plan_file, n, dest, checkpoint, run_id, device, batch_size, label, shards_done)
        else:
            if resolve_device(device).type == "cuda":
                ensure_gpu_limit()
            futures = [colorize_shard_task.submit(plan_file, s, dest, checkpoint, run_id, device, batch_size, label) for s in range(n)]
            try:
                for fut in as_completed(futures):
                    outcomes.append(fut.result())
                    shards_done(len(outcomes))
            except BaseException:
                # A failed shard, or a signal Prefect caught first (its TerminationSignal): the
                # other shards stop at their next batch, uncommitted, before the run lets go of
                # its destination's lease.
                run_stop(run_id).set()
                wait(futures)
                raise
    return _report(source, dest, plan, outcomes, run_id)


def _report(source: str, dest: str, plan: dict[str, Any], outcomes: list[dict[str, Any]], run_id: str) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    failures: list[tuple[str, str]] = []
    samples: list[tuple[str, str]] = []
    for o in sorted(outcomes, key=lambda o: o["shard"]):
        counts.update(o["counts"])
        failures.extend(tuple(f) for f in o["failures"])  # type: ignore[misc]
        samples.extend(tuple(s) for s in o["samples"])  # type: ignore[misc]
    summary = {
        "model_id": plan["model_id"],
        "already_done": plan["already_done"],
        "ok": counts.get("ok", 0),
        "failed": counts.get("failed", 0),
        "skipped": counts.get("skipped", 0),
        "failures": failures,
    }
    message = outcome_message(summary)
    create_table_artifact(
        [{"status": k, "count": summary[k]} for k in ("ok", "failed", "skipped", "already_done")],
        key=COUNTS_KEY,
        description=f"{message}: `{source}` → `{dest}`, model `{plan['model_id']}`",
    )
    _failures_table(failures, dest)
    _log_failures(failures)
    _gallery(dest, source, samples, f"Colorized with {plan['model_id']}")
    _emit_finished(summary, source, dest, run_id)
    return summary


def outcome_message(summary: dict[str, Any]) -> str:
    """"98 ok, 2 failed, 0 skipped (3 already done)": the run's state message."""
    return f"{summary['ok']} ok, {summary['failed']} failed, {summary['skipped']} skipped ({summary['already_done']} already done)"


def _final_state(summary: dict[str, Any]) -> State:
    """Completed even with failed sources (what succeeded is written; the CLI exits 2), but the
    state's message says how many failed: it is what the run list and the run page show."""
    return Completed(message=outcome_message(summary), data=summary)


def _failures_table(failures: list[tuple[str, str]], dest: str) -> None:
    """Made on every run, an empty table when nothing failed: the artifact catalogue shows the
    latest version of a key, and a clean run must not leave an earlier run's failures there."""
    rows = [{"source": key, "reason": _clip(reason)} for key, reason in failures[:MAX_FAILURE_ROWS]]
    if not failures:
        description = f"No failed sources in this run (`{dest}`)."
    elif len(failures) > MAX_FAILURE_ROWS:
        description = f"The first {MAX_FAILURE_ROWS} of {len(failures)} failed sources (`{dest}`); all are in its metadata (`colorize status`)."
    else:
        description = f"{len(failures)} failed source{'s' if len(failures) > 1 else ''} (`{dest}`)."
    create_table_artifact(rows, key=FAILURES_KEY, description=description)


def _log_failures(failures: list[tuple[str, str]]) -> None:
    if not failures:
        return
    logger = get_run_logger()
    for key, reason in failures[:MAX_FAILURE_LOGS]:
        logger.warning("failed: %s: %s", key, _clip(reason))
    if len(failures) > MAX_FAILURE_LOGS:
        logger.warning("... and %d more; see the %s artifact", len(failures) - MAX_FAILURE_LOGS, FAILURES_KEY)


def _emit_finished(summary: dict[str, Any], source: str, dest: str, run_id: str) -> None:
    """One `colorize.archive.finished` event per completed run, about the destination. Its
    resource's `colorize.outcome` label ("failures" or "clean") is what an automation matches
    (triggers match labels, not payload numbers); the counts are in the payload for its message.
    Related to this flow run (and, through the run context, its flow, deployment and tags), so
    it shows on the run's page."""
    dest_id = dest.rstrip("/") or dest
    related = []
    ctx = FlowRunContext.get()
    if ctx is not None and ctx.flow_run is not None:
        related.append({"prefect.resource.id": f"prefect.flow-run.{ctx.flow_run.id}", "prefect.resource.role": "flow-run", "prefect.resource.name": ctx.flow_run.name})
    emit_event(
        event=FINISHED_EVENT,
        resource={
            "prefect.resource.id": f"colorize.destination.{dest_id}",
            "prefect.resource.name": dest_id,
            OUTCOME_LABEL: "failures" if summary["failed"] else "clean",
            "colorize.model-id": str(summary["model_id"]),
        },
        related=related,
        payload={
            "ok": summary["ok"],
            "failed": summary["failed"],
            "skipped": summary["skipped"],
            "already_done": summary["already_done"],
            "model_id": summary["model_id"],
            "source": source,
            "dest": dest,
            "run_id": run_id,
            "message": outcome_message(summary),
            "first_failures": [{"source": k, "reason": _clip(r, 200)} for k, r in summary["failures"][:MAX_EVENT_FAILURES]],
        },
    )


def _clip(text: object, limit: int = MAX_REASON_CHARS) -> str:
    s = str(text)
    return s if len(s) <= limit else s[: limit - 1] + "…"

