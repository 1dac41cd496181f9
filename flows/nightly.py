"""The `nightly` flow: colorize whatever is new in an archive with the latest model, and report.

Incremental by design: sources already colorized by this model (same etag) are not touched, so
a night when ten photos arrived processes ten photos. Scheduled by infra/prefect.yaml and by
`colorize serve` (02:00 every night).
"""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.states import State

from colorize_core.archive.markup import markdown_code
from colorize_core.archive.outcomes import ArchiveSummary
from colorize_core.archive.vocabulary import outcome_message
from colorize_core.training.registry import LATEST
from flows.colorize_archive import colorize_archive
from flows.reporting import final_state


@flow(name="nightly", log_prints=True)
def nightly(
    source: str,
    dest: str,
    checkpoint: str = LATEST,
    shard_size: int | None = None,  # None: by the device (colorize_archive.default_shard_size)
    device: str = "auto",
    deployment: str | None = None,
    registry: str | None = None,
    retry_failed: bool = False,
    colour_photos: str = "skip",
    c2pa_secret: str | None = None,
) -> State:
    """`colorize-archive` with these settings (`retry_failed`: retry the known failures too;
    `colour_photos`: "colorize" colorizes real colour photos too; `c2pa_secret`: the Prefect
    Secret block whose identity signs every output's Content Credentials, flows/signing.py), and
    a report. Ends as that run ends: "Completed with failures" when photos failed."""
    summary: ArchiveSummary = colorize_archive(
        source,
        dest,
        checkpoint=checkpoint,
        shard_size=shard_size,
        device=device,
        deployment=deployment,
        registry=registry,
        retry_failed=retry_failed,
        colour_photos=colour_photos,
        c2pa_secret=c2pa_secret,
    )
    # Paths, keys and reasons are anyone's text: code spans (colorize_core/archive/markup.py).
    lines = [
        f"# Nightly colorization of {markdown_code(source)}",
        "",
        f"- model: {markdown_code(summary.model_id)}",
        f"- {outcome_message(summary.counts)}",
        f"- outputs and metadata: {markdown_code(dest)}",
    ]
    if summary.failures:
        lines += ["", "| failed source | reason |", "|---|---|"]
        lines += [f"| {markdown_code(key, in_table=True)} | {markdown_code(reason, in_table=True)} |" for key, reason in summary.failures[:100]]
    create_markdown_artifact("\n".join(lines), key="nightly-report", description="what tonight's run did")
    # The run list's badge is the final state's name: a night with failed photos must not read
    # plain "Completed". Callers still get the summary (Prefect unwraps the state's data).
    return final_state(summary)
