"""The `colorize-archive` flow: list an archive, plan shards of what is not done yet, colorize
one task per shard (threads on one machine, or one flow run per shard on a work pool), report
(flows/reporting.py).

Run: `colorize archive SOURCE --dest DEST [--checkpoint FILE|latest]`, or as a deployment.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import PrefectFuture, as_completed, wait
from prefect.task_runners import ThreadPoolTaskRunner

from colorize_core.archive.claims import claim as take_claim
from colorize_core.archive.claims import claim_order, drop_claims
from colorize_core.archive.config import CUDA_SHARD_SIZE, DEFAULT_SHARD_SIZE
from colorize_core.archive.history import compact_history, prune_plans
from colorize_core.archive.layout import new_run_id, plan_key
from colorize_core.archive.lease import Lease
from colorize_core.archive.listing import manifest_shards, read_manifest_shard, write_plan
from colorize_core.archive.outcomes import ArchiveSummary, PlanSummary, ShardJob, ShardOutcome
from colorize_core.archive.shards import colorize_shard, finished_shards, plan_archive, run_outcomes, shared_colorizer
from colorize_core.archive.vocabulary import COLOUR_PHOTOS, number, plural
from colorize_core.model.checkpoint import read_checkpoint_info, require_trained
from colorize_core.model.device import resolve_device
from colorize_core.storage.credentials import ContentSigner, SigningFiles, signing_files
from colorize_core.storage.errors import Interrupted, check_stop, forget_run, run_stop
from colorize_core.storage.stores import child_uri, open_store
from colorize_core.training.registry import resolve_checkpoint
from flows.reporting import final_state, report_run
from flows.retries import RETRIES, RETRY_DELAYS, retry_on_transient_errors
from flows.signing import signing_identity

GPU_LIMIT = "gpu"  # global concurrency limit held by each shard task on CUDA
# A run stops after this long (TimeLimit): generous for a night's work, and short of the next
# night's run, which would find the destination leased.
DEFAULT_TIME_LIMIT_H = 20.0
# Shard task runs (or shard flow runs on a pool) submitted and not finished, at most: more
# would only queue in Prefect's database (its server slows with thousands in one flow run).
PENDING_SHARDS = 16


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
    swept = out.sweep_temporaries()
    if swept:
        logger.info("removed %d temporary files left by an interrupted run", swept)
    return {"compacted": result.key, "files": result.files, "rows": result.rows, "plans_pruned": pruned, "temporaries_swept": swept}


@task(retries=RETRIES, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_on_transient_errors)
def plan_shards(
    source: str, dest: str, model_id: str, shard_size: int, run_id: str, retry_failed: bool = False, inventory: str | None = None,
    colour_photos: str = "skip",
) -> PlanSummary:
    """List the source (or read its listing from the S3 Inventory report at `inventory`), drop
    what already has an ok row for this model (or, skipping colour photos, a row skipped as
    colour by today's decision) and the known failures whose file has not changed (unless
    `retry_failed`), write the plan."""
    plan = plan_archive(source, dest, model_id, shard_size, retry_failed=retry_failed, inventory=inventory, skip_colour=colour_photos == "skip")
    write_plan(plan.manifest(), plan.source, shard_size, plan_uri(dest, run_id))
    return plan.summary()


@task(retries=RETRIES, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_on_transient_errors)
def colorize_shard_task(job: ShardJob) -> ShardOutcome:
    """Colorize one shard of a plan. Object-store calls retry transient errors themselves; what
    still fails (an outage longer than the retry budget, a full disk) fails the task, and the
    next run redoes the shard."""
    source, items = read_manifest_shard(job.plan, job.shard)  # this shard's rows only, not a million-row plan
    colorizer = shared_colorizer(job.checkpoint, job.device, job.batch_size)
    gpu = colorizer.device.type == "cuda"
    if gpu:
        from prefect.concurrency.sync import concurrency

        slot = concurrency(GPU_LIMIT, occupy=1, strict=True)
    else:
        slot = nullcontext()
    identity = signing_identity(job.signing, job.signing_secret)  # checked at the run's start; read again here, where the shard runs
    signer = ContentSigner(identity) if identity else None
    with slot:
        return colorize_shard(
            source, job.dest, items, colorizer, run_id=job.run_id, shard=job.shard, label=job.label, skip_colour=job.colour_photos == "skip", signer=signer
        )


@flow(name="colorize-shard", log_prints=True)
def colorize_shard_flow(
    plan: str, shard: int, dest: str, checkpoint: str, run_id: str, device: str = "auto", batch_size: int | None = None, label: bool = True,
    colour_photos: str = "skip", claim: bool = False, c2pa_cert: str | None = None, c2pa_key: str | None = None, c2pa_tsa: str | None = None,
    c2pa_secret: str | None = None,
) -> list[ShardOutcome]:
    """What a work-pool worker (one GPU per pod) runs: shard `shard` of the plan, or with `claim`
    every shard of it that it can claim (colorize_core/archive/claims.py), starting at `shard`:
    one flow run per worker slot loads the model once for many shards. Returns what each shard
    did (the parent reads it from the shards' metadata, not from here: results stay on the worker)."""
    job = ShardJob(plan, shard, dest, checkpoint, run_id, device, batch_size, label, colour_photos, signing_files(c2pa_cert, c2pa_key, c2pa_tsa), c2pa_secret)
    if not claim:
        return [colorize_shard_task(job)]
    done = []
    for s in claim_order(shard, manifest_shards(plan)):
        check_stop(run_id)
        if take_claim(dest, run_id, s):
            done.append(colorize_shard_task(job.at(s)))
    get_run_logger().info("colorized %s: %s", plural(len(done), "shard"), ", ".join(str(o.shard) for o in done) or "none left to claim")
    return done


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


def _run_shards_on_pool(deployment: str, job: ShardJob, n: int, on_done: Callable[[int], None], workers: int | None = None) -> list[ShardOutcome]:
    """`workers` flow runs on the deployment's work pool (default: the pool's concurrency limit,
    else PENDING_SHARDS), each working through the plan's shards by claims, started at evenly
    spread shards; outcomes come back through the shards' metadata files in object storage, not
    through Prefect results (which live on the worker's machine). A shard no worker finished
    (its worker died) fails the run, and the next run does it."""
    from prefect.deployments import run_deployment

    workers = max(1, min(n, workers or _pool_slots(deployment) or PENDING_SHARDS))
    dest, run_id = job.dest, job.run_id
    params = {"plan": job.plan, "dest": dest, "checkpoint": job.checkpoint, "run_id": run_id, "device": job.device, "batch_size": job.batch_size, "claim": True}
    if not job.label:  # only when not the default: a shard deployment registered before `label` existed still takes the rest
        params["label"] = False
    if job.colour_photos != "skip":  # likewise
        params["colour_photos"] = job.colour_photos
    if job.signing is not None:  # paths (readable here, where they were checked, and on the workers), never the key itself
        params.update(c2pa_cert=job.signing.cert, c2pa_key=job.signing.key, c2pa_tsa=job.signing.tsa_url)
    if job.signing_secret:  # the Secret block's name: each worker reads it
        params["c2pa_secret"] = job.signing_secret
    submitted: list[Any] = []
    reported = [0]

    def progress() -> None:
        # By shard, not by worker run (a worker works through many shards): the shards' last
        # metadata parts, one LIST a poll; the artifact is updated only when the count moves.
        done = finished_shards(dest, run_id)
        if done != reported[0]:
            reported[0] = done
            on_done(done)

    def submit(worker: int) -> Any:
        # timeout=0 submits without waiting, so the pool's workers run in parallel.
        run_id_ = run_deployment(deployment, parameters={**params, "shard": worker * n // workers}, timeout=0).id
        submitted.append(run_id_)
        return run_id_

    try:
        failed = _wait_for_runs(workers, submit, lambda _: None, window=workers, run_id=run_id, on_poll=progress)
    except BaseException:
        # The run is ending (a signal, an error) and will let go of DEST's lease: shard runs
        # still queued or writing on the pool must not go on beside the next run.
        _cancel_runs(submitted)
        raise
    finally:
        drop_claims(dest, run_id)
    outcomes = run_outcomes(dest, run_id)
    missing = n - len(outcomes)
    if failed or missing:
        what = f"{len(failed)} of {workers} worker flow runs did not complete: {', '.join(failed)}; " if failed else ""
        raise RuntimeError(f"{what}{missing} of {n} shards were not finished; re-run to finish them")
    return outcomes


def _pool_slots(deployment: str) -> int | None:
    """The concurrency limit of the deployment's work pool (its worker slots), if it has one."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        pool = client.read_work_pool(client.read_deployment_by_name(deployment).work_pool_name)
    return pool.concurrency_limit


class TimeLimit:
    """Stops run `run_id` (`run_stop`, as a signal does) once `hours` have passed. A timer
    thread, not Prefect's `timeout_seconds`: that one raises from a SIGALRM handler into
    whatever the main thread is doing (it crashed the process inside native code here), where
    this lets every shard stop at its next batch."""

    def __init__(self, run_id: str, hours: float | None) -> None:
        self.run_id, self.passed = run_id, False
        self._timer = threading.Timer(hours * 3600.0, self._stop) if hours is not None else None
        if self._timer is not None:
            self._timer.daemon = True

    def _stop(self) -> None:
        self.passed = True
        run_stop(self.run_id).set()

    def __enter__(self) -> TimeLimit:
        if self._timer is not None:
            self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()


def default_shard_size(device: str, deployment: str | None) -> int:
    """Photos per shard when not given: a task holds seconds to minutes of device work
    (config.py). A work pool's workers are taken to be GPU pods unless `device` is "cpu"."""
    if device == "cpu":
        return DEFAULT_SHARD_SIZE
    return CUDA_SHARD_SIZE if deployment or resolve_device(device).type == "cuda" else DEFAULT_SHARD_SIZE


def _cancel_runs(run_ids: list[Any]) -> None:
    """Ask the server to cancel each flow run not yet final (best effort: each in its own try)."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    with get_client(sync_client=True) as client:
        for rid in run_ids:
            try:
                run = client.read_flow_run(rid)
                if run.state is None or not run.state.is_final():
                    client.set_flow_run_state(rid, Cancelling(), force=True)
            except Exception:  # noqa: BLE001 - the others still get their cancel
                logging.getLogger(__name__).warning("could not cancel shard flow run %s", rid, exc_info=True)


def _wait_for_runs(
    n: int, submit: Callable[[int], Any], on_done: Callable[[int], None], *, window: int = PENDING_SHARDS, poll_s: float = 2.0, timeout_s: float = 24 * 3600.0,
    run_id: str | None = None, on_poll: Callable[[], None] | None = None,
) -> list[str]:
    """Start flow runs 0..n-1, `submit(i)` each (it returns the flow run's id), at most `window`
    not final at a time (never thousands of scheduled runs at once), reading the ones in flight
    with one filtered query per poll; reports how many are final (and calls `on_poll` once a
    poll); stops (Interrupted) when the run `run_id` is stopping. Returns "name (state)" of
    those that did not complete."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout_s
    in_flight = [submit(s) for s in range(min(window, n))]
    following = len(in_flight)
    finals: list[Any] = []
    with get_client(sync_client=True) as client:
        while in_flight:
            check_stop(run_id)  # a signal or the time limit: the caller cancels the runs in flight
            if time.monotonic() > deadline:
                raise TimeoutError(f"{n - len(finals)} shard flow runs did not finish in {timeout_s:.0f}s")
            for run in client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=in_flight)), limit=len(in_flight)):
                if run.state is not None and run.state.is_final():
                    finals.append(run)
                    in_flight.remove(run.id)
                    on_done(len(finals))
                    if following < n:
                        in_flight.append(submit(following))
                        following += 1
            if on_poll is not None:
                on_poll()
            if in_flight:
                time.sleep(poll_s)
    return [f"{r.name} ({r.state.name})" for r in finals if not r.state.is_completed()]


@flow(name="colorize-archive", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=2))
def colorize_archive(
    source: str,
    dest: str,
    checkpoint: str = "latest",
    shard_size: int | None = None,  # None: 500 on CPU, 10,000 on CUDA or a work pool (config.py)
    device: str = "auto",
    batch_size: int | None = None,  # None: the device's default (colorize_core/model/defaults.py)
    deployment: str | None = None,
    registry: str | None = None,
    wait_s: float = 0.0,
    allow_untrained: bool = False,
    label: bool = True,
    retry_failed: bool = False,
    colour_photos: str = "skip",
    inventory: str | None = None,
    no_lease: bool = False,
    pool_workers: int | None = None,
    time_limit_h: float | None = DEFAULT_TIME_LIMIT_H,
    c2pa_cert: str | None = None,
    c2pa_key: str | None = None,
    c2pa_tsa: str | None = None,
    c2pa_secret: str | None = None,
) -> ArchiveSummary:
    """Colorize everything under `source` not yet done with this model into `dest`.

    `deployment` ("colorize-shard/<name>"): run the shards on that deployment's work pool instead
    of in this process's threads: `pool_workers` flow runs (default: the pool's concurrency
    limit, else 16), each loading the model once and working through the shards it claims.
    One run per destination at a time: a second one fails with DestinationBusy naming the
    first, or waits up to `wait_s` seconds for it to finish.
    A model that never trained (0 steps) is refused unless `allow_untrained`.
    `label`: each output's metadata says a trained model colorized it (IPTC DigitalSourceType
    compositeWithTrainedAlgorithmicMedia, the model id, the source key) and keeps the source's EXIF.
    `retry_failed`: also retry the known failures (sources that failed for a permanent reason,
    colorize_core/archive/failures.py), which runs otherwise skip until their file changes.
    `colour_photos`: "skip" leaves real colour photos alone (skipped rows; toned and aged
    black-and-white prints are colorized, colorize_core/monochrome/), "colorize" colorizes
    every photo, for an archive known to be all black-and-white.
    `inventory`: the URI of an S3 Inventory report's manifest.json for `source`'s bucket; the
    listing is read from it instead of listing `source` (objects newer than the report wait
    for the next one).
    `time_limit_h`: a run still working after this many hours stops as it does on SIGTERM (the
    shards at their next batch; what they committed is kept) and fails, so a run that hangs or
    crawls ends as a failure the alerts see instead of Running forever; None: no limit.
    `no_lease`: take no lease on `dest` (unsafe: nothing keeps a second run out), for a store
    that ignores conditional writes, on which taking one stops the run (lease.py).
    `c2pa_cert`, `c2pa_key` (PEM files where the shards run), `c2pa_tsa`: each output carries
    Content Credentials signed with them (colorize_core/storage/credentials.py); or
    `c2pa_secret`: the name of a Prefect Secret block holding the identity (flows/signing.py),
    for workers without the files. A bad or expired certificate fails the run at its start,
    before any output is written."""
    if colour_photos not in COLOUR_PHOTOS:
        raise ValueError(f"colour_photos must be one of {', '.join(COLOUR_PHOTOS)}, not {colour_photos!r}")
    if shard_size is not None and shard_size <= 0:
        raise ValueError(f"shard size must be positive, got {shard_size}")
    if time_limit_h is not None and time_limit_h < 0:
        raise ValueError(f"time_limit_h must be 0 or more hours (None: no limit), got {time_limit_h}")
    signing = signing_files(c2pa_cert, c2pa_key, c2pa_tsa)
    signing_identity(signing, c2pa_secret)  # a CredentialsError in one line, before the lease and any output
    shard_size = shard_size or default_shard_size(device, deployment)
    run_id = new_run_id()
    checkpoint = resolve_checkpoint(checkpoint, registry=registry)
    info = read_checkpoint_info(checkpoint)
    require_trained(info, allow_untrained=allow_untrained)
    steps = "unknown" if info.step is None else info.step
    get_run_logger().info("model %s (%s training steps) from %s", info.model_id, steps, checkpoint)
    try:
        if no_lease:
            get_run_logger().warning("--no-lease: %s is not leased; nothing keeps another run from writing it at the same time", dest)
        from contextlib import nullcontext

        with nullcontext() if no_lease else Lease(dest, run_id, wait_s=wait_s) as lease, TimeLimit(run_id, time_limit_h) as limit:
            try:
                summary = _colorize(
                    source, dest, checkpoint, info.model_id, shard_size, device, batch_size, deployment, run_id, label, retry_failed, colour_photos, inventory, pool_workers,
                    signing, c2pa_secret,
                )  # fmt: skip
            except Interrupted:
                if lease is not None and lease.lost:
                    raise RuntimeError(f"{dest}: another run took over this run's lease (it stopped renewing it); check `colorize status {dest}`") from None
                if limit.passed:
                    raise RuntimeError(
                        f"{dest}: the run passed its time limit of {time_limit_h:g} h and stopped (what it finished is kept; the next run does the rest); "
                        "raise time_limit_h (--time-limit) if runs this long are expected"
                    ) from None
                raise
    finally:
        forget_run(run_id)
    # A returned State is the run's final state; whoever called the flow still gets the
    # ArchiveSummary (Prefect unwraps the state's data), and `return_state=True` gets this state.
    return final_state(summary)  # type: ignore[return-value]


def _colorize(
    source: str,
    dest: str,
    checkpoint: str,
    model_id: str,
    shard_size: int,
    device: str,
    batch_size: int | None,
    deployment: str | None,
    run_id: str,
    label: bool,
    retry_failed: bool = False,
    colour_photos: str = "skip",
    inventory: str | None = None,
    pool_workers: int | None = None,
    signing: SigningFiles | None = None,
    signing_secret: str | None = None,
) -> ArchiveSummary:
    logger = get_run_logger()
    compact_metadata(dest)
    plan = plan_shards(source, dest, model_id, shard_size, run_id, retry_failed, inventory, colour_photos)
    if plan.known_failed:
        logger.info("%s, not retried (--retry-failed to retry)", plural(plan.known_failed, "known failure"))
    logger.info("model %s: %s to do, %s already done (or skipped as colour), %s", plan.model_id, number(plan.todo), number(plan.already_done), plural(plan.shards, "shard"))
    job = ShardJob(plan_uri(dest, run_id), 0, dest, checkpoint, run_id, device, batch_size, label, colour_photos, signing, signing_secret)
    n = plan.shards
    outcomes: list[ShardOutcome] = []
    if n:
        progress = create_progress_artifact(0.0, key="colorize-progress", description=f"{plural(n, 'shard')} of {plural(plan.todo, 'photo')}")

        def shards_done(done: int) -> None:
            update_progress_artifact(progress, 100.0 * done / n)

        if deployment:
            outcomes = _run_shards_on_pool(deployment, job, n, shards_done, pool_workers)
        else:
            if resolve_device(device).type == "cuda":
                ensure_gpu_limit()
            futures: list[PrefectFuture[ShardOutcome]] = []

            def submit(shard: int) -> PrefectFuture[ShardOutcome]:
                futures.append(colorize_shard_task.submit(job.at(shard)))
                return futures[-1]

            try:
                for result in _in_window(n, submit, PENDING_SHARDS):
                    outcomes.append(result)
                    shards_done(len(outcomes))
            except BaseException:
                # A failed shard, or a signal Prefect caught first (its TerminationSignal): the
                # other shards stop at their next batch, uncommitted, before the run lets go of
                # its destination's lease.
                run_stop(run_id).set()
                wait(futures)
                raise
    return report_run(source, dest, plan, outcomes, run_id)


def _in_window(n: int, submit: Callable[[int], PrefectFuture[ShardOutcome]], window: int) -> Iterator[ShardOutcome]:
    """Results of shards 0..n-1 as they complete, with at most `window` task runs submitted and
    not finished at a time: Prefect holds a few pending task runs, not one per shard of a
    ten-million-photo first run."""
    pending = {submit(s) for s in range(min(window, n))}
    following = len(pending)
    while pending:
        fut = next(iter(as_completed(pending)))
        pending.discard(fut)
        if following < n:
            pending.add(submit(following))
            following += 1
        yield fut.result()
