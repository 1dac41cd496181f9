"""Prefect's side of the retry policy: a task is retried only for a transient error that no
layer below has already retried (object-store calls retry themselves, for minutes; errors.py
classifies). A bad input or a permanent error fails at once: it would fail the same way again."""

from __future__ import annotations

from typing import Any

from prefect.tasks import exponential_backoff

from colorize_core.storage.errors import is_transient

RETRIES = 2
RETRY_DELAYS = exponential_backoff(backoff_factor=2)  # 2 s, 4 s


def retry_on_transient_errors(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: True only for a transient error not yet retried."""
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - we classify, not handle
        return is_transient(exc) and not getattr(exc, "retried", False)
    return False
