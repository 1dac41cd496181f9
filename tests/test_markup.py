"""Names from an archive are data, never markup: the escaping (colorize_core/archive/markup.py),
checked on the rendered structure (markdown-it, a CommonMark renderer with GFM tables, and
Python's HTML parser); the run's words (vocabulary.py); the gallery's sampling and text.
Rendered by the Prefect UI itself: tests/test_alerts.py and tests/test_gallery_browser.py."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from markdown_it import MarkdownIt
from PIL import Image

from colorize_core.archive.gallery import GalleryRun, gallery_description, gallery_html, gallery_markdown, spread
from colorize_core.archive.markup import html_text, markdown_code, markdown_text, one_line, shorten_middle
from tests.conftest import png_bytes
from colorize_core.archive.vocabulary import COMPLETED, COMPLETED_WITH_FAILURES, count_rows, outcome_message, plural, state_name

# Keys anyone with write access to a bucket can make.
NASTY = [
    "box/x` | ![t](http://example.org/track.png) | `y.jpg",
    "<script>alert(1)</script>.jpg",
    "a<img src=x onerror=alert(1)>.png",
    "pipe | in | name.jpg",
    "back\\slash\\|pipe.jpg",
    "``double`` and `single`.png",
    "`leading and trailing`",
    "line\nbreak\r\nand\ttab.jpg",
    "[link](javascript:alert(1)) **bold** _it_ &amp; &lt;.jpg",
    'quote " and \' apostrophe.jpg',
    "www.example.org.jpg",
]


class _Tags(HTMLParser):
    """Every start tag with its attributes, the text of each <code>, and the rows of tables
    (the text of each cell)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.codes: list[str] = []
        self.rows: list[list[str]] = []
        self._open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th") and self.rows:
            self.rows[-1].append("")
        elif tag == "code":
            self.codes.append("")
        if tag in ("code", "td", "th"):
            self._open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._open and self._open[-1] == tag:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        if self._open and self._open[-1] == "code":
            self.codes[-1] += data
        if self._open and self._open[0] in ("td", "th"):
            self.rows[-1][-1] += data


def _parse(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    return parser


def _render(markdown: str) -> str:
    return MarkdownIt("commonmark").enable("table").render(markdown)


def _png(colour: tuple[int, int, int]) -> bytes:
    return png_bytes(Image.new("RGB", (40, 30), colour))


@pytest.mark.parametrize("key", NASTY)
def test_a_code_span_in_a_table_cell_shows_the_key_literally(key: str) -> None:
    markdown = "| source | reason |\n|---|---|\n" + f"| {markdown_code(key, in_table=True)} | {markdown_code(key, in_table=True)} |"
    page = _parse(_render(markdown))
    assert [len(r) for r in page.rows] == [2, 2]  # the table keeps its columns
    assert {t for t, _ in page.tags} <= {"table", "thead", "tbody", "tr", "th", "td", "code"}  # no img, script, a, strong
    shown = one_line(key).replace("\\|", "\u29f5|")  # a backslash before a pipe is shown as a look-alike
    assert page.codes == [shown, shown]


@pytest.mark.parametrize("key", NASTY)
def test_a_code_span_in_prose_shows_the_key_literally(key: str) -> None:
    page = _parse(_render(f"Failed: {markdown_code(key)}."))
    assert {t for t, _ in page.tags} == {"p", "code"}
    assert page.codes == [one_line(key)]


@pytest.mark.parametrize("key", NASTY)
def test_escaped_text_is_text_in_titles_and_prose(key: str) -> None:
    page = _parse(_render(f'![before](data:image/png;base64,AAAA "{markdown_text(key)}") {markdown_text(key)}'))
    assert [t for t, _ in page.tags] == ["p", "img"]  # one image: ours; nothing from the key
    assert page.tags[1][1]["title"] == one_line(key) and page.tags[1][1]["src"] == "data:image/png;base64,AAAA"


@pytest.mark.parametrize("key", NASTY)
def test_html_text_is_text_and_attribute_values(key: str) -> None:
    page = _parse(f'<p title="{html_text(key)}">{html_text(key)}</p>')
    assert page.tags == [("p", {"title": key})]


def test_gallery_markdown_and_html_keep_their_structure_with_any_key() -> None:
    pairs = [(key, _png((128, 128, 128)), _png((220, 20, 20))) for key in NASTY]
    run = GalleryRun(run_id="20260101T020000-abcdef12", dest="s3://b/<dest>`|", message="11 ok, 2 failed", failed=2, flow_run_name="brave-otter", shards=3, new_photos=11)

    md = _parse(_render(gallery_markdown(pairs, run)))
    assert [len(r) for r in md.rows] == [3] * (len(NASTY) + 1)
    imgs = [attrs for tag, attrs in md.tags if tag == "img"]
    assert len(imgs) == 2 * len(NASTY) and all(str(a["src"]).startswith("data:image/jpeg;base64,") for a in imgs)
    assert [a["title"] for a in imgs[::2]] == [one_line(k) for k in NASTY]  # the full name on hover
    assert not {t for t, _ in md.tags} & {"script", "a", "em"}  # (strong: the failures line's own)
    assert "brave-otter" in md.codes and "20260101T020000-abcdef12" in md.codes and "s3://b/<dest>`|" in md.codes

    page = _parse(gallery_html(pairs, run))
    assert [len(r) for r in page.rows] == [3] * (len(NASTY) + 1)
    assert "script" not in {t for t, _ in page.tags}
    names = [attrs for tag, attrs in page.tags if tag == "td" and attrs.get("class") == "name"]
    assert [n["title"] for n in names] == NASTY  # exact, line breaks and all, in the attribute
    assert sum(1 for tag, _ in page.tags if tag == "img") == 2 * len(NASTY)


def test_gallery_says_which_run_and_where_failures_are() -> None:
    pairs = [("a.png", _png((128, 128, 128)), _png((220, 20, 20)))]
    run = GalleryRun(run_id="20260101T020000-abcdef12", dest="/arch/out", message="1 ok, 2 failed", failed=2, flow_run_name="brave-otter", shards=1, new_photos=1)
    md = gallery_markdown(pairs, run)
    assert md.startswith("Run ` brave-otter ` (colorize run ` 20260101T020000-abcdef12 `, started 2026-01-01 02:00 UTC): 1 ok, 2 failed.")
    assert "**2 photos failed**" in md and "`colorize-failures`" in md and "`colorize status` ` /arch/out `" in md
    assert "1 of the 1 photo colorized in this run, spread over its 1 shard" in md
    assert not md.lstrip().startswith("#")  # the artifact's description is its one title
    html = gallery_html(pairs, run)
    assert html.count("<h1>") == 1 and "2 photos failed" in html and "colorize status /arch/out" in html
    empty = gallery_markdown([], GalleryRun(run_id="r", dest="/arch/out", message="0 ok", failed=0))
    assert "No new photos were colorized in this run" in empty and "/arch/out/_colorize/gallery.html" in empty and "|" not in empty
    # A run id without a start time: no dangling "started )".
    assert empty.startswith("Run (colorize run ` r `): 0 ok.") and "started" not in empty
    assert gallery_description(GalleryRun(run_id="r", dest="/arch/out", message="0 ok", failed=0)) == "Before and after: samples of run"
    assert "started" not in gallery_html(pairs, GalleryRun(run_id="r", dest="/arch/out", message="1 ok", failed=0))


def test_spread_takes_samples_across_shards() -> None:
    per_shard = [[(s, i) for i in range(3)] for s in range(10)]
    picked = spread(per_shard, 6)
    assert len({s for s, _ in picked}) == 6 and picked[0][0] == 0 and picked[-1][0] == 9  # first to last shard
    assert spread([[(0, 0), (0, 1), (0, 2)], [(1, 0)]], 6) == [(0, 0), (1, 0), (0, 1), (0, 2)]
    assert spread([[], [], [(2, 0)]], 6) == [(2, 0)] and spread([], 6) == []


def test_shorten_middle_keeps_both_ends() -> None:
    key = "box 12/a very long folder name from the bureau/photo_000123.jpg"
    short = shorten_middle(key, 28)
    assert len(short) == 28 and short.startswith("box 12/") and short.endswith("000123.jpg") and "…" in short
    assert shorten_middle("short.jpg", 28) == "short.jpg"


def test_one_vocabulary_for_the_outcome() -> None:
    summary = {"ok": 20, "failed": 2, "skipped": 1, "already_done": 1000}
    assert outcome_message(summary) == "20 ok, 2 failed, 1 skipped as colour, 1,000 already done"
    assert outcome_message({**summary, "known_failed": 1}) == "20 ok, 2 failed, 1 known failure, 1 skipped as colour, 1,000 already done"
    assert outcome_message({**summary, "known_failed": 3}).count("3 known failures") == 1
    assert outcome_message({**summary, "known_failed": 0}) == outcome_message(summary)  # missing or 0: not told
    assert [words for _, words, _ in count_rows(summary)] == ["ok", "failed", "skipped as colour", "already done"]
    assert (plural(1, "shard"), plural(2, "shard"), plural(1000, "photo")) == ("1 shard", "2 shards", "1,000 photos")
    assert state_name(summary) == COMPLETED_WITH_FAILURES == "Completed with failures"
    assert state_name({**summary, "failed": 0, "known_failed": 4}) == COMPLETED == "Completed"
