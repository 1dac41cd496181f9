"""Storage URIs: a local folder (a path or `file://`, the embedded default) or
`s3://bucket/prefix` -> the store rooted there, and an object's URI <-> (its store, its key).

The stores behind one small interface (objects.py: keys, errors, the protocol): local.py and
s3.py. Keys are relative, "/"-separated and validated, so no key can reach outside a store's
root. Listings are sorted by key (S3 lists in UTF-8 byte order; the local store sorts the same
way). Local writes are atomic (atomic.py); S3 honours `AWS_ENDPOINT_URL` /
`AWS_ENDPOINT_URL_S3` (MinIO and other S3-compatible stores) and the standard credential chain.
Every call is retried while its error is transient, and fails at once when it is permanent
(errors.py decides which); a name a store cannot hold is an `InvalidKeyError`, a failure of that
one object, never of the run.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote, urlparse

from colorize_core.storage.local import LocalStore
from colorize_core.storage.objects import ObjectStore, validate_key
from colorize_core.storage.s3 import S3Store


def open_store(uri: str | os.PathLike[str], **s3_options: Any) -> ObjectStore:
    """`s3://bucket/prefix`, `file:///path` or a plain path -> the store rooted there."""
    text = os.fspath(uri)
    parsed = urlparse(text)
    if parsed.scheme == "s3":
        return S3Store(parsed.netloc, parsed.path, **s3_options)
    if parsed.scheme == "file":
        return LocalStore(unquote(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:  # "C:\\..." parses with scheme "c"
        raise ValueError(f"unsupported storage URI {text!r}: use a local path, file:// or s3://")
    return LocalStore(text)


def child_uri(uri: str, key: str) -> str:
    """The URI of `key` under the store at `uri` (local paths resolved): the inverse of split_uri."""
    return f"{open_store(uri).uri.rstrip('/')}/{validate_key(key)}"


def split_uri(uri: str | os.PathLike[str]) -> tuple[ObjectStore, str]:
    """The URI of one object -> (the store of its parent, its key): `s3://b/a/m.parquet` ->
    (store at s3://b/a, "m.parquet")."""
    text = os.fspath(uri).rstrip("/")
    parent, _, name = text.rpartition("/")
    if not name or parent in ("s3:", "s3:/"):
        raise ValueError(f"{text!r} does not name an object")
    return open_store(parent or "."), name
