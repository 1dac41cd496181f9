"""Retry policy shared by every task: retry object-store and network errors with backoff,
never a bad input (it would fail the same way again)."""

from __future__ import annotations

from typing import Any

from prefect.tasks import exponential_backoff

from colorize_core.storage import ObjectNotFound, StorageError

RETRIES = 3
RETRY_DELAYS = exponential_backoff(backoff_factor=1)  # 1 s, 2 s, 4 s
TRANSIENT = (StorageError, ConnectionError, TimeoutError)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT) and not isinstance(exc, ObjectNotFound)


def retry_on_storage_errors(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: True only for transient storage and network errors."""
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - we classify, not handle
        return is_transient(exc)
    return False
