"""Text that comes from an archive (source keys, failure reasons, EXIF text, destination paths)
put into markdown or HTML as text, never as markup.

S3 keys are whatever anyone with write access to the bucket typed, and the Prefect UI renders
artifact markdown and descriptions with raw HTML allowed: a key such as
``x` | ![t](http://example.org/t.png) | `y.jpg`` would otherwise close its code span and table
cell and make every viewer fetch that image. Pure Python: imported by flows and the CLI alike.
"""

from __future__ import annotations

import html
import re

# Line breaks end a table row (and two end a paragraph); other control characters have no
# business on a page. Both become spaces.
_BREAKS_AND_CONTROLS = re.compile(r"\r\n|[\x00-\x1f\x7f\x85\u2028\u2029]")
_BACKTICK_RUNS = re.compile(r"`+")
# Every ASCII punctuation character: CommonMark lets a backslash escape any of them, and
# escaping all of them leaves no emphasis, link, image, HTML tag, entity or cell separator.
_ASCII_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")

ELLIPSIS = "…"


def one_line(value: object) -> str:
    """`value` as one line of text: line breaks and control characters become spaces."""
    return _BREAKS_AND_CONTROLS.sub(" ", str(value))


def markdown_code(value: object, *, in_table: bool = False) -> str:
    """`value` as a markdown code span, shown literally: nothing inside a code span is markup,
    and remark's literal autolinks (www., http://, e-mail) skip code too, which no backslash
    escaping can prevent. The fence is one backtick longer than the longest run inside.
    `in_table`: `|` escaped as `\\|`, which GFM removes again before the cell's content is read,
    code spans included."""
    text = one_line(value)
    if not text:
        return ""
    longest = max((len(run) for run in _BACKTICK_RUNS.findall(text)), default=0)
    fence = "`" * (longest + 1)
    if in_table:
        # A backslash just before a `|` would pair with the `\` added here and leave the pipe
        # bare: the table splits on it. A backslash can be shown as a look-alike (U+29F5) only.
        text = text.replace("\\|", "\u29f5|").replace("|", "\\|")
    # One space each side: CommonMark strips it again, and it keeps a leading or trailing
    # backtick of the text from joining the fence.
    return f"{fence} {text} {fence}"


def markdown_text(value: object) -> str:
    """`value` as plain markdown text (prose, table cells and link titles too): every ASCII
    punctuation character backslash-escaped. For names and paths prefer `markdown_code`: remark
    still turns an escaped `www.example.org` into a link."""
    return _ASCII_PUNCTUATION.sub(r"\\\1", one_line(value))


def html_text(value: object) -> str:
    """`value` as HTML text or a quoted attribute value (quotes escaped too)."""
    return html.escape(str(value), quote=True)


def shorten_middle(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters by an ellipsis in the middle, so that both the
    folder and the file name's end (its number, its extension) stay visible."""
    if len(text) <= limit:
        return text
    keep = max(limit - 1, 2)
    head = (keep + 1) // 2
    return text[:head] + ELLIPSIS + text[len(text) - (keep - head) :]
