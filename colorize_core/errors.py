"""What kind of failure an exception is, decided once, here, for the whole project.

- transient: worth the same call again after a pause (connection resets, timeouts, 5xx,
  throttling, an endpoint that does not answer). Retried with exponential backoff and full jitter
  for a total time (`COLORIZE_RETRY_SECONDS`, default 300 s: an S3 outage of a few minutes
  is survived) by `call_with_retries`, which every object-store call goes through.
- permanent: the same call would fail the same way (credentials, a missing bucket or source,
  access denied, a bad key, a bad checkpoint, a full disk). Raised at once.

A `StorageError` carries its classification (`transient`), made from the original exception
where it is raised; `is_transient` reads it, and classifies everything else by type and errno.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

# S3 (and S3-compatible) error codes worth a retry; every other service error is permanent.
TRANSIENT_CODES = frozenset(
    {
        "SlowDown", "Throttling", "ThrottlingException", "TooManyRequests", "RequestLimitExceeded",
        "RequestTimeout", "RequestTimeoutException", "InternalError", "ServiceUnavailable",
        "500", "502", "503", "504", "429",
    }
)  # fmt: skip
# Local file-system errors that a retry can cure (network file systems, interrupted calls).
TRANSIENT_ERRNOS = frozenset(
    {errno.EAGAIN, errno.EINTR, errno.ETIMEDOUT, errno.ESTALE, errno.ECONNRESET, errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH}
)
# Local errors that name a problem of the disk, not of one file: the run cannot go on.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
# Errors of one file's name: that source fails, the rest of its shard goes on.
NAME_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.EILSEQ})

# Set by a SIGTERM/SIGINT handler: long waits (retry pauses) end early, shards stop committing.
STOP = threading.Event()


class Interrupted(Exception):
    """The process was asked to stop (SIGTERM/SIGINT): work in progress is abandoned uncommitted."""


def check_stop() -> None:
    if STOP.is_set():
        raise Interrupted("stopped by a signal before finishing")


def service_code(exc: BaseException) -> str:
    """The S3 error code of a botocore `ClientError` ("" for anything else)."""
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {}) if isinstance(response, dict) else {}
    code = str(error.get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") if isinstance(response, dict) else None
    return code or (str(status) if status else "")


def is_transient(exc: BaseException) -> bool:
    """True when the same call may succeed if made again a little later."""
    flagged = getattr(exc, "transient", None)
    if isinstance(flagged, bool):
        return flagged
    code = service_code(exc)
    if code:
        return code in TRANSIENT_CODES or code.startswith("5")
    name = type(exc).__name__
    # botocore's connection failures (EndpointConnectionError, ConnectionClosedError,
    # ReadTimeoutError, ConnectTimeoutError, ...) and urllib3's, without importing them here.
    if name in ("NoCredentialsError", "PartialCredentialsError", "NoRegionError", "ParamValidationError"):
        return False
    if any(c.__name__ in ("ConnectionError", "HTTPClientError", "ResponseStreamingError", "IncompleteReadError", "ProtocolError") for c in type(exc).__mro__):
        return True
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.errno in TRANSIENT_ERRNOS
    return False


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter (first wait up to `first_s`, doubling, each at most
    `max_wait_s`) until `total_s` seconds have passed since the first attempt."""

    total_s: float = 300.0
    first_s: float = 0.5
    max_wait_s: float = 20.0

    @classmethod
    def from_env(cls) -> "RetryPolicy":
        total = os.environ.get("COLORIZE_RETRY_SECONDS")
        return cls(total_s=float(total)) if total else cls()


def call_with_retries(fn: Callable[[], T], what: str, policy: RetryPolicy | None = None) -> T:
    """`fn()`, retried while it raises transient errors, for at most the policy's total time.

    The last error is raised with `retried = True` so that no outer layer retries it again."""
    policy = policy or RetryPolicy.from_env()
    deadline = time.monotonic() + policy.total_s
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc):
                raise
            wait = random.uniform(0.0, min(policy.max_wait_s, policy.first_s * 2**attempt))
            attempt += 1
            if time.monotonic() + wait > deadline or STOP.is_set():
                try:
                    exc.retried = True  # type: ignore[attr-defined]
                except AttributeError:
                    pass
                raise
            log.info("%s: transient error, retry %d in %.1fs: %s", what, attempt, wait, exc)
            if STOP.wait(wait):
                raise
