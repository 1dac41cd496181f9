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

import asyncio
import errno
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from colorize_core.settings import settings

T = TypeVar("T")
log = logging.getLogger(__name__)

# S3 (and S3-compatible) error codes worth a retry; every other service error is permanent.
TRANSIENT_CODES = frozenset(
    {
        "SlowDown", "Throttling", "ThrottlingException", "TooManyRequests", "RequestLimitExceeded",
        "RequestTimeout", "RequestTimeoutException", "InternalError", "ServiceUnavailable",
        "OperationAborted", "429",
    }
)  # fmt: skip (and every 5xx)
# botocore errors by name (not imported here): these never cure themselves ...
PERMANENT_NAMES = frozenset({"NoCredentialsError", "PartialCredentialsError", "NoRegionError", "ParamValidationError", "SSLError"})
# ... and these do: a failed fetch of instance-metadata credentials, or of the connection.
TRANSIENT_NAMES = frozenset({"CredentialRetrievalError", "ConnectionError", "HTTPClientError", "ResponseStreamingError", "IncompleteReadError", "ProtocolError"})
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
# Set for one run (by run id) when it must stop early: a signal Prefect caught first, or a shard
# that failed. Its other shards then abandon their work uncommitted before the run lets go of
# its destination.
_run_stops: dict[str, threading.Event] = {}
_run_stops_lock = threading.Lock()


class Interrupted(Exception):
    """The process or the run was asked to stop: work in progress is abandoned uncommitted."""


def run_stop(run_id: str) -> threading.Event:
    with _run_stops_lock:
        return _run_stops.setdefault(run_id, threading.Event())


def forget_run(run_id: str) -> None:
    with _run_stops_lock:
        _run_stops.pop(run_id, None)


def check_stop(run_id: str | None = None) -> None:
    if STOP.is_set():
        raise Interrupted("stopped by a signal before finishing")
    with _run_stops_lock:
        stopping = run_id is not None and run_id in _run_stops and _run_stops[run_id].is_set()
    if stopping:  # looked up, not created: shards run by library callers register nothing
        raise Interrupted(f"run {run_id} is stopping before finishing")


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
    if code == "UnknownError":
        # botocore's name for an error answer without an error document: its status decides
        # (Ceph RGW answers a conditional PUT that lost a race so: 500, ECANCELED).
        status = (getattr(exc, "response", None) or {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
        return isinstance(status, int) and status >= 500
    if code:
        return code in TRANSIENT_CODES or code.startswith("5")
    # botocore's and urllib3's errors by class name (botocore's connection failures,
    # EndpointConnectionError, ConnectionClosedError, ReadTimeoutError, ..., derive from its
    # ConnectionError), without importing them here. A certificate failure is permanent.
    names = [c.__name__ for c in type(exc).__mro__]
    if names[0] in PERMANENT_NAMES:
        return False
    if any(name in TRANSIENT_NAMES for name in names):
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
        """`COLORIZE_RETRY_SECONDS` (default 300 s) of the default backoff."""
        return cls(total_s=settings().retry_seconds)


def _retry_wait(policy: RetryPolicy, attempt: int, deadline: float) -> float | None:
    """The pause before retry `attempt + 1` (full jitter), or None when it would pass the
    deadline or the process is stopping."""
    wait = random.uniform(0.0, min(policy.max_wait_s, policy.first_s * 2**attempt))
    return None if time.monotonic() + wait > deadline or STOP.is_set() else wait


def _gave_up(exc: Exception) -> None:
    try:
        exc.retried = True  # type: ignore[attr-defined]
    except AttributeError:
        pass


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
            wait = _retry_wait(policy, attempt, deadline)
            attempt += 1
            if wait is not None:
                log.info("%s: transient error, retry %d in %.1fs: %s", what, attempt, wait, exc)
            if wait is None or STOP.wait(wait):  # a stopping process does not wait out its retries
                _gave_up(exc)
                raise


async def call_with_retries_async(fn: Callable[[], Awaitable[T]], what: str, policy: RetryPolicy | None = None) -> T:
    """`call_with_retries` for a coroutine function: the same schedule, the pauses awaited (in
    short steps, so that a stopping process does not wait them out)."""
    policy = policy or RetryPolicy.from_env()
    deadline = time.monotonic() + policy.total_s
    attempt = 0
    while True:
        try:
            return await fn()
        except Exception as exc:
            if not is_transient(exc):
                raise
            wait = _retry_wait(policy, attempt, deadline)
            attempt += 1
            if wait is not None:
                log.info("%s: transient error, retry %d in %.1fs: %s", what, attempt, wait, exc)
                until = time.monotonic() + wait
                while not STOP.is_set() and (left := until - time.monotonic()) > 0:
                    await asyncio.sleep(min(left, 0.2))
            if wait is None or STOP.is_set():
                _gave_up(exc)
                raise
