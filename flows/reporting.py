"""What a colorize-archive run shows the operator when it ends: the counts and failures tables,
the gallery (an artifact and DEST/_colorize/gallery.html), the failed sources in the run's log,
the `colorize.archive.finished` event an automation matches, and the run's final state's name."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import FlowRunContext
from prefect.events import emit_event
from prefect.states import Completed, State

from colorize_core.archive.gallery import FAILURES_ARTIFACT, GalleryRun, gallery_description, gallery_html, gallery_markdown, spread
from colorize_core.archive.layout import GALLERY_KEY
from colorize_core.archive.markup import markdown_code
from colorize_core.archive.outcomes import ArchiveSummary, PlanSummary, ShardOutcome
from colorize_core.archive.vocabulary import count_rows, outcome_message, plural, state_name
from colorize_core.storage.stores import open_store

# What a run shows in the Prefect UI and tells automations (README "What the UI shows", "Alerts").
COUNTS_KEY = "colorize-counts"  # table artifact: rows {status, count}
# The failures table's key is gallery.FAILURES_ARTIFACT: the gallery names it too.
GALLERY_KEY_ARTIFACT = "colorize-gallery"  # markdown artifact: before/after samples; made every run
FINISHED_EVENT = "colorize.archive.finished"  # emitted once per completed run; see _emit_finished
OUTCOME_LABEL = "colorize.outcome"  # the event resource's label: "failures" or "clean"
DESTINATION_RESOURCE = "colorize.destination."  # + DEST: the event's resource id (the automation matches the prefix)
MAX_FAILURE_ROWS = 1000  # rows in the failures table
MAX_FAILURE_LOGS = 50  # failed sources logged one per line as warnings
MAX_EVENT_FAILURES = 10  # failed sources in the event's payload (for the notification's text)
MAX_REASON_CHARS = 500


def _gallery(dest: str, source: str, samples: list[list[tuple[str, str]]], run: GalleryRun) -> None:
    """The `colorize-gallery` artifact, made by every run (like the failures table, so the
    Artifacts page never shows an earlier run's photos beside this run's counts unremarked), and
    DEST/_colorize/gallery.html, rewritten only by a run with photos to show (a page of the run
    that colorized the latest ones beats an empty one; it says which run it is)."""
    src, out = open_store(source), open_store(dest)
    pairs = [(key, src.read(key), out.read(out_key)) for key, out_key in spread(samples)]
    create_markdown_artifact(gallery_markdown(pairs, run), key=GALLERY_KEY_ARTIFACT, description=gallery_description(run))
    if pairs:
        out.write(GALLERY_KEY, gallery_html(pairs, run).encode())



def report_run(source: str, dest: str, plan: PlanSummary, outcomes: list[ShardOutcome], run_id: str) -> ArchiveSummary:
    """The run's summary from its shards' outcomes, and everything the operator sees of it."""
    summary = ArchiveSummary.of(plan, outcomes)
    samples = [list(o.samples) for o in sorted(outcomes, key=lambda o: o.shard)]  # per shard, in shard order: the gallery spreads over them
    message = outcome_message(summary.counts)
    # The cells are this module's words; the description is markdown, so the paths (anyone's
    # text) go in code spans.
    create_table_artifact(
        [{"photos": words, "count": n} for _, words, n in count_rows(summary.counts)],
        key=COUNTS_KEY,
        description=f"{message}: {markdown_code(source)} → {markdown_code(dest)}, model {markdown_code(plan.model_id)}, colorize run {markdown_code(run_id)}",
    )
    _failures_table(summary.failures, dest)
    _log_failures(summary.failures)
    flow_run = _flow_run()
    run = GalleryRun(
        run_id=run_id, dest=dest, message=message, failed=summary.failed, flow_run_name=flow_run.name if flow_run else None,
        shards=len(outcomes), new_photos=summary.ok,
    )
    _gallery(dest, source, samples, run)
    _emit_finished(summary, source, dest, run_id)
    return summary


def _flow_run() -> Any:
    ctx = FlowRunContext.get()
    return ctx.flow_run if ctx is not None else None


def final_state(summary: ArchiveSummary) -> State:
    """Completed even with failed sources (what succeeded is written; the CLI exits 2), but named
    "Completed with failures" (its type stays COMPLETED, so whatever checks the type still sees
    a completed run): the run list's badge shows the state's name, and a run that failed on some
    photos must not look like a clean one there. The message (the counts) is on the run page."""
    return Completed(name=state_name(summary.counts), message=outcome_message(summary.counts), data=summary)


def _failures_table(failures: list[tuple[str, str]], dest: str) -> None:
    """Made on every run, an empty table when nothing failed: the artifact catalogue shows the
    latest version of a key, and a clean run must not leave an earlier run's failures there.
    The UI renders each table cell as markdown, as it does the description: keys, reasons and
    the path (anyone's text) go in code spans (the exact keys are in the run's metadata)."""
    rows = [{"source": markdown_code(key), "reason": markdown_code(_clip(reason))} for key, reason in failures[:MAX_FAILURE_ROWS]]
    where = markdown_code(dest)
    if not failures:
        description = f"No failed sources in this run ({where})."
    elif len(failures) > MAX_FAILURE_ROWS:
        description = f"The first {MAX_FAILURE_ROWS:,} of {len(failures):,} failed sources ({where}); all are in its metadata (`colorize status`)."
    else:
        description = f"{plural(len(failures), 'failed source')} ({where})."
    create_table_artifact(rows, key=FAILURES_ARTIFACT, description=description)


def _log_failures(failures: list[tuple[str, str]]) -> None:
    if not failures:
        return
    logger = get_run_logger()
    for key, reason in failures[:MAX_FAILURE_LOGS]:
        logger.warning("failed: %s: %s", key, _clip(reason))
    if len(failures) > MAX_FAILURE_LOGS:
        logger.warning("... and %d more; see the %s artifact", len(failures) - MAX_FAILURE_LOGS, FAILURES_ARTIFACT)


def _emit_finished(summary: ArchiveSummary, source: str, dest: str, run_id: str) -> None:
    """One `colorize.archive.finished` event per completed run, about the destination. Its
    resource's `colorize.outcome` label ("failures" or "clean") is what an automation matches
    (triggers match labels, not payload numbers); the counts are in the payload for its message,
    and in labels. The Event Feed's card shows resources by `prefect.resource.name`: the
    destination, and related resources for the outcome with its counts and for the source; its
    URL filter (`?resource=colorize.destination.<DEST>`) matches ids by prefix, related ones too.
    Related to this flow run (and, through the run context, its flow, deployment and tags), so
    it shows on the run's page. Names are shown as text there, never as markup."""
    dest_id = dest.rstrip("/") or dest
    outcome = "failures" if summary.failed else "clean"
    message = outcome_message(summary.counts)
    related = [
        {"prefect.resource.id": f"colorize.outcome.{outcome}", "prefect.resource.role": "colorize-outcome", "prefect.resource.name": f"{state_name(summary.counts)}: {message}"},
        {"prefect.resource.id": f"colorize.source.{source.rstrip('/') or source}", "prefect.resource.role": "colorize-source", "prefect.resource.name": f"from {source}"},
    ]
    flow_run = _flow_run()
    if flow_run is not None:
        related.append({"prefect.resource.id": f"prefect.flow-run.{flow_run.id}", "prefect.resource.role": "flow-run", "prefect.resource.name": flow_run.name})
    emit_event(
        event=FINISHED_EVENT,
        resource={
            "prefect.resource.id": f"{DESTINATION_RESOURCE}{dest_id}",
            "prefect.resource.name": dest_id,
            OUTCOME_LABEL: outcome,
            "colorize.model-id": summary.model_id,
            # Every count, zeros too (count_rows leaves out the optional ones): a filter on a
            # label must find it on every run's event.
            **{f"colorize.{key}": str(n) for key, n in summary.counts.items()},
        },
        related=related,
        payload={
            **summary.counts,
            "model_id": summary.model_id,
            "source": source,
            "dest": dest,
            "run_id": run_id,
            "message": message,
            "first_failures": [{"source": k, "reason": _clip(r, 200)} for k, r in summary.failures[:MAX_EVENT_FAILURES]],
        },
    )


def _clip(text: object, limit: int = MAX_REASON_CHARS) -> str:
    s = str(text)
    return s if len(s) <= limit else s[: limit - 1] + "…"

