"""The night nothing happened, on a real Prefect server (triggers, actions and event persister on,
proactive triggers evaluated every second instead of every 5): the no-run automation
(infra/automation-no-run.yaml), created by `python -m flows.alerts create` with a 10 s window
(Prefect's least for a proactive trigger), fires for a destination whose
`colorize.archive.finished` events stop, sends its notification through the same block as the
failures automation, naming the destination and what to check, and fires once per silence; a
destination whose events keep coming does not fire."""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect import flow
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from colorize_core.archive.outcomes import ArchiveSummary
from flows.alerts import NO_RUN_FILE, load_automation, parse_within
from flows.reporting import _emit_finished
from tests.webhook import alerts_cli, webhook_handler
from tests.prefect_server import drain_prefect_workers, prefect_server

pytestmark = pytest.mark.prefect  # a Prefect server of its own: not in `make test-fast`

BLOCK = "custom-webhook/colorize-no-run"
WINDOW_S = 10  # Prefect refuses a proactive window under 10 s
# A destination whose name is markup: the message must show it as text.
SILENT = "/archive/box 1 <b>silent</b> & co"
STEADY = "/archive/box 2 steady"

SERVER_SETTINGS = {
    "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "true",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "true",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "0.5",
    # How often the server evaluates proactive triggers (default 5 s): the firing comes at most
    # this long after the window ends.
    "PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY": "PT1S",  # a timedelta: ISO 8601
}


_Webhook = webhook_handler()
_alerts_cli = alerts_cli


def _events(api_url: str, filter_: dict[str, Any]) -> list[dict[str, Any]]:
    r = httpx.post(f"{api_url}/events/filter", json={"filter": filter_, "limit": 50}, timeout=10)
    r.raise_for_status()
    return list(r.json()["events"])


def _summary() -> ArchiveSummary:
    return ArchiveSummary("residual_encoder-test", ok=2, already_done=5)


def _finished(dest: str, run: str) -> None:
    """What a completed archive run emits, sent now."""
    _emit_finished(_summary(), f"/bw/{run}", dest, run)
    drain_prefect_workers()


@flow(name="colorize-archive")
def _a_run(dest: str) -> None:
    """The silent destination's last run, as a flow run, so the message can name it."""
    _emit_finished(_summary(), "/bw/last", dest, "last-run")


def _poll(what: str, probe: Callable[[], Any], deadline: float, between: Callable[[], None]) -> Any:
    while not (found := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        between()
    return found


def test_parse_within() -> None:
    assert parse_within("30h") == timedelta(hours=30) and parse_within("90m") == timedelta(minutes=90)
    assert parse_within("1.5d") == timedelta(hours=36) and parse_within("10s") == timedelta(seconds=10)
    for bad in ("30", "h", "5s", "-1h", "3 weeks"):
        with pytest.raises(ValueError):
            parse_within(bad)
    # The file's default: the next nightly run (24 h) plus 6 h.
    assert load_automation(NO_RUN_FILE).trigger.within == timedelta(hours=30)
    assert load_automation(NO_RUN_FILE, within=timedelta(hours=36)).trigger.within == timedelta(hours=36)


def test_the_no_run_automation_fires_for_a_silent_destination_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    _Webhook.received = []
    for k, v in SERVER_SETTINGS.items():
        monkeypatch.setenv(k, v)
    try:
        with prefect_server(tmp_path / "prefect-home") as (api_url, env), temporary_settings({PREFECT_API_URL: api_url}):
            drain_prefect_workers()  # workers another test started send to that test's server
            try:
                CustomWebhookNotificationBlock(
                    name="colorize-no-run", url=f"http://127.0.0.1:{hook.server_port}/hook", json_data={"subject": "{{subject}}", "body": "{{body}}"}
                ).save(BLOCK.split("/")[1])
                created = _alerts_cli(env, "--block", BLOCK, "--within", f"{WINDOW_S}s")
                again = _alerts_cli(env)  # no flags: updated in place, keeping the block and the window
                with get_client(sync_client=True) as client:
                    (automation,) = client.read_automations_by_name(load_automation(NO_RUN_FILE).name)
                    assert len(client.read_automations_by_name(load_automation().name)) == 1  # the failures one, beside it
                assert f"created automation {automation.id} (automation-no-run.yaml)" in created
                assert f"updated automation {automation.id} (automation-no-run.yaml)" in again
                assert automation.trigger.within == timedelta(seconds=WINDOW_S)
                assert [a.type for a in automation.actions] == ["send-notification"]
                auto_filter = {"resource": {"id": [f"prefect.automation.{automation.id}"]}}

                def triggered() -> list[dict[str, Any]]:
                    return _events(api_url, {**auto_filter, "event": {"name": ["prefect.automation.triggered"]}})

                state = _a_run(SILENT, return_state=True)
                drain_prefect_workers()
                silent_since = time.monotonic()
                beats = 0

                def steady_beat() -> None:
                    nonlocal beats
                    beats += 1
                    _finished(STEADY, f"steady-{beats}")  # a run every 2 s: well inside the window
                    time.sleep(2)

                steady_beat()
                # The silent destination fires after its window plus at most the evaluation
                # period; a generous deadline for a slow machine, polled, never a fixed sleep.
                fired = _poll("the no-run automation to fire", triggered, silent_since + 6 * WINDOW_S, steady_beat)
                assert time.monotonic() - silent_since >= WINDOW_S  # not before the window passed
                # Then one more full window of the steady destination's runs, and of silence for
                # the other: it fires once per silence, and the steady one not at all.
                end = time.monotonic() + WINDOW_S + 3
                while time.monotonic() < end:
                    steady_beat()
                fired = triggered()
                assert len(fired) == 1, [f["payload"].get("triggering_labels") for f in fired]
                cause = fired[0]["payload"]["triggering_event"]
                assert cause["resource"]["prefect.resource.id"] == f"colorize.destination.{SILENT}"
                assert cause["event"] == "colorize.archive.finished"

                (sent,) = _poll("the notification", lambda: _Webhook.received, time.monotonic() + 60, lambda: time.sleep(0.5))
                assert sent["subject"].startswith(f"colorize-archive: no run has finished for {html.escape(SILENT)} since ")
                body = sent["body"]
                assert "<b>" not in body and f"No colorize-archive run has finished for {html.escape(SILENT)} since " in body
                with get_client(sync_client=True) as client:
                    run_name = client.read_flow_run(state.state_details.flow_run_id).name
                assert f"The last one: 2 ok, 0 failed, 0 skipped as colour, 5 already done, colorize-archive run {run_name} (colorize run last-run)" in body
                assert "the worker" in body and "the Prefect server" in body
                assert f"`colorize status {html.escape(SILENT)}`" in body
                executed = _events(api_url, {**auto_filter, "event": {"prefix": ["prefect.automation.action."]}})
                assert "prefect.automation.action.failed" not in {e["event"] for e in executed}
                assert len(_Webhook.received) == 1
            finally:
                drain_prefect_workers()
    finally:
        hook.shutdown()
