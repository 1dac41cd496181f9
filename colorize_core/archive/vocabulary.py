"""The words an archive run's outcome is told in, defined once: the CLI's summary line, the run's
state (name and message), its counts table, gallery and event all say the same thing.

  ok                 colorized and written by this run
  failed             could not be colorized this run (a corrupt photo, an unstorable key)
  known failures     failed before for a permanent reason and were not tried again
  skipped as colour  already a colour photo: left alone rather than given guessed colour
  already done       done by an earlier run with this model, or skipped as colour by this
                     decision (same etag): not touched

Pure Python (no Prefect, no torch): `colorize --help` and the flow import it alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# (summary key, words after the number, words after 1 where they differ). The keys are the run
# summary's; "skipped" keeps its key and reads "skipped as colour" everywhere.
COUNTS: tuple[tuple[str, str, str], ...] = (
    ("ok", "ok", "ok"),
    ("failed", "failed", "failed"),
    ("known_failed", "known failures", "known failure"),
    ("skipped", "skipped as colour", "skipped as colour"),
    ("already_done", "already done", "already done"),
)
# Shown only when not zero: most runs have none, and before it existed a summary had no such key.
OPTIONAL = frozenset({"known_failed"})

# A metadata row's status in these words (`colorize status`): "skipped" is always skipped as colour.
STATUS_WORDS = {key: many for key, many, _ in COUNTS if key != many}

# What an archive run does with real colour photos (`colorize archive --colour-photos`): leave
# them alone (skipped as colour), or colorize them too (an archive known to be all black-and-white).
COLOUR_PHOTOS = ("skip", "colorize")

COMPLETED = "Completed"
COMPLETED_WITH_FAILURES = "Completed with failures"  # the state name of a run with failed photos


def number(n: int) -> str:
    """1000 -> "1,000"."""
    return f"{n:,}"


def plural(n: int, one: str, many: str | None = None) -> str:
    """plural(1, "shard") -> "1 shard"; plural(2, "shard") -> "2 shards"."""
    return f"{number(n)} {one if n == 1 else (many or one + 's')}"


def count(summary: Mapping[str, Any], key: str) -> int:
    """A count of the summary; 0 when the summary has no such key (older summaries)."""
    return int(summary.get(key) or 0)


def count_rows(summary: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    """(key, words, count) for each count the summary reports, in the order they are told."""
    rows = []
    for key, many, one in COUNTS:
        n = count(summary, key)
        if key in OPTIONAL and not n:
            continue
        rows.append((key, one if n == 1 else many, n))
    return rows


def outcome_message(summary: Mapping[str, Any]) -> str:
    """"20 ok, 2 failed, 1 skipped as colour, 1,000 already done": what the run did, in words."""
    return ", ".join(f"{number(n)} {words}" for _, words, n in count_rows(summary))


def state_name(summary: Mapping[str, Any]) -> str:
    """The run's final state's name, the badge in the Prefect UI's run list: a run that failed on
    some photos must not look like a clean one. Known failures were reported by the run that
    found them, so they alone do not change it."""
    return COMPLETED_WITH_FAILURES if count(summary, "failed") else COMPLETED
