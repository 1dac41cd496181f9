"""Why a source failed or was skipped, in the words its metadata row (and `colorize status`)
gives, defined once: an archive shard (steps.py) and dataset building (data/build.py) say the
same thing of the same fault. A decoder's own reasons come with its errors (storage/imageio.py).
"""

from __future__ import annotations

VANISHED = "object vanished since listing"
ALREADY_COLOUR = "already a colour photo"  # how a skipped row's reason starts; the decision's figures follow


def unsafe_key(problem: str) -> str:
    """A key the listing found unsafe (archive/listing.py's `problem`)."""
    return f"cannot be processed safely: {problem}"


def unreadable_key(problem: object) -> str:
    """A key the source store refused to read (InvalidKeyError)."""
    return f"cannot be read safely: {problem}"


def unstorable(problem: object) -> str:
    """An output name the destination cannot hold."""
    return f"cannot be stored: {problem}"


def already_colour(figures: str) -> str:
    return f"{ALREADY_COLOUR} ({figures})"


# What a row's `credentials` column says when the run signs its outputs (null when it does not).
SIGNED = "signed"


def unsigned(why: str) -> str:
    """An output written without Content Credentials, and why (a format that cannot carry them)."""
    return f"unsigned: {why}"


def not_signed(problem: BaseException) -> str:
    """An output that could not be signed, so was not written (the next run tries again)."""
    text = " ".join(str(problem).split()) or type(problem).__name__
    return f"cannot be signed: {text}"
