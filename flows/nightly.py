"""The `nightly` flow: colorize whatever is new in an archive with the latest model, and report.

Incremental by design: sources already colorized by this model (same etag) are not touched, so
a night when ten photos arrived processes ten photos. Scheduled by infra/prefect.yaml and by
`colorize serve` (02:00 every night).
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from colorize_core.data.sharding import DEFAULT_SHARD_SIZE
from colorize_core.training.registry import LATEST
from flows.colorize_archive import colorize_archive


@flow(name="nightly", log_prints=True)
def nightly(
    source: str,
    dest: str,
    checkpoint: str = LATEST,
    shard_size: int = DEFAULT_SHARD_SIZE,
    device: str = "auto",
    deployment: str | None = None,
    registry: str | None = None,
) -> dict[str, Any]:
    summary = colorize_archive(
        source, dest, checkpoint=checkpoint, shard_size=shard_size, device=device, deployment=deployment, registry=registry
    )
    lines = [
        f"# Nightly colorization of `{source}`",
        "",
        f"- model: `{summary['model_id']}`",
        f"- new and colorized: **{summary['ok']}**",
        f"- failed: **{summary['failed']}**; skipped (already colour): {summary['skipped']}",
        f"- already done before tonight: {summary['already_done']}",
        f"- outputs and metadata: `{dest}`",
    ]
    if summary["failures"]:
        lines += ["", "| failed source | reason |", "|---|---|"]
        lines += [f"| `{key}` | {reason} |" for key, reason in summary["failures"][:100]]
    create_markdown_artifact("\n".join(lines), key="nightly-report", description="what tonight's run did")
    return summary
