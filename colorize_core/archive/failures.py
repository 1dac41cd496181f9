"""Which failed rows are known failures, decided here, once.

A failed row is `permanent` when the fault is the file's or its name's (bad data, a key the
stores cannot hold safely), never the machine's or the destination's (memory, a file standing
where a folder of the output's path should be). The classes come with the errors themselves
(`ImageDecodeError.permanent`, `InvalidKeyError.permanent`), and archive/steps.py writes them
into each failed row.

Whether a file "can be read" also depends on the tool that judged it (its decoders, its size
limit), so each failed row records `judged_by` (`current_judge()`). A known failure is a permanent
failure judged by this very tool, of a file whose etag has not changed: the next run leaves it
alone, so a nightly job's exit status is about what is new. A replaced file, an upgraded tool
(or a row from before these columns) and `--retry-failed` retry it. Anything else (a source that
vanished since the listing, memory, an unknown reason) is retried by every run: an unknown
reason must never hide a source for good.
"""

from __future__ import annotations

import functools
from typing import Any

import PIL
import tifffile

from colorize_core.storage.imageio import MAX_PIXELS
from colorize_core.storage.provenance import software

@functools.cache
def current_judge() -> str:
    """This tool as a judge of files: its version, its decoders' versions and its size limit.
    Any change retries the known failures it judged (a codec upgrade may read them)."""
    return f"{software()}; Pillow {PIL.__version__}; tifffile {tifffile.__version__}; max {MAX_PIXELS} px"


def is_known_failure(row: dict[str, Any], judged_by: str | None = None) -> bool:
    """Whether a source's latest row is a known failure: failed for a permanent reason, judged
    by this tool (`judged_by`: the judge to compare with, `current_judge()` unless given). A row written
    before the `permanent` and `judged_by` columns reads them as null: retried once, judged anew."""
    return row["status"] == "failed" and row.get("permanent") is True and row.get("judged_by") == (judged_by or current_judge())
