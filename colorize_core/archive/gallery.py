"""Before/after galleries: small JPEG thumbnails as data URIs, so one HTML page or one markdown
artifact shows them anywhere (a local folder, an S3 bucket, the Prefect UI) with no file links.

Each gallery says which run it belongs to and what that run did (so an earlier run's gallery
beside a later run's counts is visibly so), how many photos failed and where they are listed,
and shows samples spread over the run's shards. Names from the archive are data: escaped by
colorize_core.archive.markup, shortened in the middle to keep the columns narrow, the full name
on hover.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from PIL import Image

from colorize_core.archive.layout import GALLERY_KEY, run_started
from colorize_core.archive.markup import html_text, markdown_code, markdown_text, shorten_middle
from colorize_core.archive.vocabulary import plural
from colorize_core.storage.imageio import decode

T = TypeVar("T")

SAMPLES = 6  # photos per gallery
# The Prefect UI gives a markdown artifact about 570 px at a 1280 px window (the run's details
# take the right-hand column): two thumbnails and a shortened name fit, nothing wider does.
MARKDOWN_THUMB_PX = 150
MARKDOWN_NAME_CHARS = 28
HTML_THUMB_PX = 384
HTML_NAME_CHARS = 60
FAILURES_ARTIFACT = "colorize-failures"  # table artifact: rows {source, reason}; made every run, empty when clean


@dataclass(frozen=True)
class GalleryRun:
    """What a gallery says about the run it belongs to."""

    run_id: str  # the colorize run id (metadata files and `colorize status` name runs by it)
    dest: str
    message: str  # the run's outcome in words (vocabulary.outcome_message)
    failed: int
    flow_run_name: str | None = None  # the name the Prefect UI lists the run under
    shards: int = 0  # how many shards the run had
    new_photos: int = 0  # how many photos it colorized


def thumbnail_uri(data: bytes, size: int = 256) -> str:
    img = decode(data, name="thumbnail").convert("RGB")
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def image_uri(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def spread(per_shard: Sequence[Sequence[T]], k: int = SAMPLES) -> list[T]:
    """Up to `k` samples taken across shards rather than the first shards' first: the first
    sample of `k` shards spaced evenly over the run (all of them when there are fewer), then
    second samples, and so on. Shards are in name order, so the first shards alone would show
    one folder."""
    n = len(per_shard)
    if n == 0 or k <= 0:
        return []
    first = sorted({(2 * j + 1) * n // (2 * k) for j in range(min(k, n))})  # centres of k equal runs of shards
    order = first + [s for s in range(n) if s not in set(first)]
    picked: list[T] = []
    for depth in range(max(len(s) for s in per_shard)):
        for s in order:
            if depth < len(per_shard[s]):
                picked.append(per_shard[s][depth])
                if len(picked) == k:
                    return picked
    return picked


def _when(run_id: str) -> str:
    started = run_started(f"_colorize/runs/{run_id}")
    return started.strftime("%Y-%m-%d %H:%M UTC") if started else ""


def _run_line(run: GalleryRun, code: bool) -> tuple[str, str]:
    """(flow run name, "colorize run ID, started WHEN") ready for markdown (`code`) or HTML; a
    run id without a start time (not one of ours) is named without one."""
    esc = markdown_code if code else html_text
    name = esc(run.flow_run_name) if run.flow_run_name else ""
    run_id = esc(run.run_id) if code else f"<code>{esc(run.run_id)}</code>"
    when = _when(run.run_id)
    return name, f"colorize run {run_id}, started {when}" if when else f"colorize run {run_id}"


def gallery_description(run: GalleryRun) -> str:
    """The artifact's description, its one title (the UI shows it above the markdown)."""
    name = f" {markdown_code(run.flow_run_name)}" if run.flow_run_name else ""
    when = _when(run.run_id)
    return f"Before and after: samples of run{name}" + (f" ({when})" if when else "")


def gallery_markdown(pairs: list[tuple[str, bytes, bytes]], run: GalleryRun) -> str:
    """(name, before bytes, after bytes) -> the run, its outcome, its failures, and a table of
    source | before | after. No heading: the artifact's description is the title."""
    name, which = _run_line(run, code=True)
    lines = [f"Run {name + ' ' if name else ''}({which}): {run.message}.", ""]
    if run.failed:
        lines += [
            f"**{plural(run.failed, 'photo')} failed**: listed with their reasons in this run's "
            f"`{FAILURES_ARTIFACT}` artifact, and by `colorize status` {markdown_code(run.dest)}.",
            "",
        ]
    if not pairs:
        lines.append(
            "No new photos were colorized in this run, so there is nothing to show here; the samples of the "
            f"latest run that colorized some are in {markdown_code(run.dest.rstrip('/') + '/' + GALLERY_KEY)}."
        )
        return "\n".join(lines)
    lines += [
        f"{len(pairs)} of the {plural(run.new_photos, 'photo')} colorized in this run, spread over its "
        f"{plural(run.shards, 'shard')} (hover over a photo for its full name):",
        "",
        "| source | before | after |",
        "|---|---|---|",
    ]
    for key, before, after in pairs:
        short = markdown_code(shorten_middle(key, MARKDOWN_NAME_CHARS), in_table=True)
        title = markdown_text(key)  # a link title: an attribute, never a link itself
        b, a = thumbnail_uri(before, MARKDOWN_THUMB_PX), thumbnail_uri(after, MARKDOWN_THUMB_PX)
        lines.append(f'| {short} | ![before]({b} "{title}") | ![after]({a} "{title}") |')
    return "\n".join(lines)


def gallery_html(pairs: list[tuple[str, bytes, bytes]], run: GalleryRun) -> str:
    """The same as a page of its own (DEST/_colorize/gallery.html), thumbnails larger."""
    name, which = _run_line(run, code=False)
    dest = html_text(run.dest)
    paras = [f"Run {'<b>' + name + '</b> ' if name else ''}({which}): {html_text(run.message)}."]
    if run.failed:
        paras.append(
            f"<b>{plural(run.failed, 'photo')} failed</b>: listed with their reasons in the run's "
            f"<code>{FAILURES_ARTIFACT}</code> artifact in the Prefect UI, and by <code>colorize status {dest}</code>."
        )
    paras.append(f"{len(pairs)} of the {plural(run.new_photos, 'photo')} colorized in this run, spread over its {plural(run.shards, 'shard')}.")
    rows = []
    for key, before, after in pairs:
        full = html_text(key)
        rows.append(
            f'<tr><td class="name" title="{full}">{html_text(shorten_middle(key, HTML_NAME_CHARS))}</td>'
            f'<td><img src="{thumbnail_uri(before, HTML_THUMB_PX)}" alt="before: {full}" title="{full}"></td>'
            f'<td><img src="{thumbnail_uri(after, HTML_THUMB_PX)}" alt="after: {full}" title="{full}"></td></tr>'
        )
    title = f"Before and after: {dest}"
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>'
        "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
        "td,th{padding:4px;vertical-align:top;text-align:left}td.name{max-width:16em;overflow-wrap:anywhere}"
        "img{max-width:min(384px,36vw);height:auto}</style>"
        f"</head><body><h1>{title}</h1>{''.join(f'<p>{p}</p>' for p in paras)}"
        f"<table><tr><th>source</th><th>before</th><th>after</th></tr>{''.join(rows)}</table></body></html>"
    )
