"""What a colorize-archive run shows in Prefect and tells it, through a real Prefect server (its
triggers, actions and event-persister services on): the failures automation, created by
`python -m flows.alerts create`, fires, and sends its notification, for a run with a corrupt
photo and not for a clean one; the run's artifacts, state message and warnings, read back
through the API."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from uuid import UUID

import httpx
import pytest
from prefect import flow
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
    LogFilterLevel,
)
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows import colorize_archive as archive_flow
from flows.alerts import AUTOMATION_FILE, load_automation
from flows.colorize_archive import colorize_archive
from tests.conftest import gray_archive
from tests.prefect_server import drain_prefect_workers, prefect_server

pytestmark = pytest.mark.prefect  # a Prefect server of its own: not in `make test-fast`

ROOT = Path(__file__).resolve().parents[1]
BLOCK = "custom-webhook/colorize-test"
CORRUPT = "box 9/corrupt.jpg"

SERVER_SETTINGS = {
    # The services the alert needs, on whatever the defaults become: triggers (which also gates
    # the actions service) and the event persister (the events API reads what it stored).
    "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "true",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "true",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "0.5",
}


class _Webhook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _alerts_cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "flows.alerts", "create", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _wait_for(what: str, probe: Callable[[], Any], timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.5)
    return found


def _events(api_url: str, filter_: dict[str, Any]) -> list[dict[str, Any]]:
    r = httpx.post(f"{api_url}/events/filter", json={"filter": filter_, "limit": 50}, timeout=10)
    r.raise_for_status()
    return list(r.json()["events"])


@pytest.fixture(scope="module")
def alert_setup(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Iterator[dict[str, Any]]:
    """A server with the automation (notifying a webhook served here), then a clean archive run
    and one with a corrupt photo, in that order."""
    tmp = tmp_path_factory.mktemp("alerts")
    hook = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    _Webhook.received = []
    with pytest.MonkeyPatch.context() as mp:
        for k, v in SERVER_SETTINGS.items():
            mp.setenv(k, v)
        try:
            with prefect_server(tmp / "prefect-home") as (api_url, env), temporary_settings({PREFECT_API_URL: api_url}):
                # Workers another test started send to that test's server: start fresh ones here.
                drain_prefect_workers()
                try:
                    CustomWebhookNotificationBlock(
                        name="colorize-test", url=f"http://127.0.0.1:{hook.server_port}/hook", json_data={"subject": "{{subject}}", "body": "{{body}}"}
                    ).save(BLOCK.split("/")[1])
                    created = _alerts_cli(env, "--block", BLOCK)
                    again = _alerts_cli(env)  # no --block: updates in place, keeping the block
                    with get_client(sync_client=True) as client:
                        (automation,) = client.read_automations_by_name(load_automation().name)

                    clean_src, failing_src = str(tmp / "clean"), str(tmp / "failing")
                    gray_archive(clean_src, 3)
                    gray_archive(failing_src, 3, start=10)
                    Path(failing_src, CORRUPT).parent.mkdir(parents=True, exist_ok=True)
                    Path(failing_src, CORRUPT).write_bytes(b"\xff\xd8\xff nope")
                    ckpt = str(tiny_checkpoint)
                    clean = colorize_archive(clean_src, str(tmp / "clean-out"), checkpoint=ckpt, shard_size=10, device="cpu", return_state=True)
                    failing = colorize_archive(failing_src, str(tmp / "failing-out"), checkpoint=ckpt, shard_size=2, device="cpu", return_state=True)
                    drain_prefect_workers()  # the runs' logs and events reach the server now
                    yield {
                        "api_url": api_url, "automation": automation, "created": created, "again": again,
                        "clean": clean, "failing": failing, "clean_dest": str(tmp / "clean-out"), "failing_dest": str(tmp / "failing-out"),
                    }
                finally:
                    drain_prefect_workers()
        finally:
            hook.shutdown()


def test_the_failures_automation_fires_for_failures_only(alert_setup: dict[str, Any]) -> None:
    api_url, automation = alert_setup["api_url"], alert_setup["automation"]
    assert alert_setup["created"].startswith(f"created automation {automation.id}")
    assert alert_setup["again"].startswith(f"updated automation {automation.id}")  # one automation, not two
    assert [a.type for a in automation.actions] == ["send-notification"]

    clean_run = alert_setup["clean"].state_details.flow_run_id
    failing_run = alert_setup["failing"].state_details.flow_run_id
    finished = _wait_for(
        "both runs' colorize.archive.finished events",
        lambda: (evs := _events(api_url, {"event": {"name": ["colorize.archive.finished"]}})) and len(evs) >= 2 and evs,
    )
    by_run = {}
    for ev in finished:
        (run,) = [r for r in ev["related"] if r["prefect.resource.role"] == "flow-run"]
        by_run[UUID(run["prefect.resource.id"].removeprefix("prefect.flow-run."))] = ev
        assert {r["prefect.resource.role"] for r in ev["related"]} >= {"flow-run", "flow"}  # shown on the run's page
    assert by_run[clean_run]["resource"]["colorize.outcome"] == "clean"
    assert by_run[clean_run]["resource"]["prefect.resource.id"] == f"colorize.destination.{alert_setup['clean_dest']}"
    failing_event = by_run[failing_run]
    assert failing_event["resource"]["colorize.outcome"] == "failures"
    payload = failing_event["payload"]
    assert (payload["ok"], payload["failed"], payload["skipped"], payload["already_done"]) == (3, 1, 0, 0)
    assert payload["dest"] == alert_setup["failing_dest"] and payload["run_id"] and payload["model_id"]
    assert [f["source"] for f in payload["first_failures"]] == [CORRUPT]

    # The notification, rendered from the event and its flow run, reached the webhook.
    (sent,) = _wait_for("the notification", lambda: _Webhook.received)
    assert sent["subject"] == f"colorize-archive: 1 failed in {alert_setup['failing_dest']}"
    assert sent["body"].startswith("3 ok, 1 failed, 0 skipped (0 already done): colorize-archive run ")
    assert f"failed sources:\n- {CORRUPT}: not an image" in sent["body"]
    with get_client(sync_client=True) as client:
        run_name = client.read_flow_run(failing_run).name
    assert f"colorize-archive run {run_name} (colorize run {payload['run_id']})" in sent["body"]

    # The triggers service reads events in order: once the failing run's event has fired the
    # automation, the clean run's (sent before it) has been evaluated too, and did not fire it.
    triggered = _wait_for(
        "the automation's triggered event",
        lambda: _events(api_url, {"event": {"name": ["prefect.automation.triggered"]}, "resource": {"id": [f"prefect.automation.{automation.id}"]}}),
    )
    assert [t["payload"]["triggering_event"]["id"] for t in triggered] == [failing_event["id"]]
    executed = _wait_for(
        "the action's executed event",
        lambda: _events(api_url, {"event": {"prefix": ["prefect.automation.action."]}, "resource": {"id": [f"prefect.automation.{automation.id}"]}}),
    )
    assert "prefect.automation.action.failed" not in {e["event"] for e in executed}
    assert len(_Webhook.received) == 1


def _artifacts(client: Any, run_id: UUID) -> dict[str, Any]:
    arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
    return {a.key: a for a in arts}


def test_artifacts_state_message_and_warnings_through_the_api(alert_setup: dict[str, Any]) -> None:
    failing, clean = alert_setup["failing"], alert_setup["clean"]
    summary = failing.result()  # return_state=True callers: the summary dict is the state's data
    assert summary["failed"] == 1 and summary["failures"][0][0] == CORRUPT
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(failing.state_details.flow_run_id)
        assert run.state is not None and run.state.is_completed()
        assert run.state.message == "3 ok, 1 failed, 0 skipped (0 already done)"
        clean_run = client.read_flow_run(clean.state_details.flow_run_id)
        assert clean_run.state is not None and clean_run.state.message == "3 ok, 0 failed, 0 skipped (0 already done)"

        arts = _artifacts(client, run.id)
        assert {"colorize-counts", "colorize-failures", "colorize-progress"} <= set(arts)
        assert json.loads(arts["colorize-counts"].data) == [
            {"status": "ok", "count": 3}, {"status": "failed", "count": 1}, {"status": "skipped", "count": 0}, {"status": "already_done", "count": 0},
        ]
        assert "3 ok, 1 failed" in arts["colorize-counts"].description
        rows = json.loads(arts["colorize-failures"].data)
        assert [set(r) for r in rows] == [{"source", "reason"}] and rows[0]["source"] == CORRUPT and rows[0]["reason"]
        assert arts["colorize-failures"].description.startswith("1 failed source ")
        # A clean run makes an empty failures table, so that the artifact catalogue (the latest
        # version of each key) never shows an earlier run's failures as current.
        clean_arts = _artifacts(client, clean_run.id)
        assert json.loads(clean_arts["colorize-failures"].data) == []
        assert clean_arts["colorize-failures"].description.startswith("No failed sources")

        warnings = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id]), level=LogFilterLevel(ge_=30)))
        assert any(w.message.startswith(f"failed: {CORRUPT}: ") for w in warnings)
        assert not client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[clean_run.id]), level=LogFilterLevel(ge_=30)))


def test_failure_tables_and_warnings_are_capped(alert_setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive_flow, "MAX_FAILURE_ROWS", 3)
    monkeypatch.setattr(archive_flow, "MAX_FAILURE_LOGS", 2)
    monkeypatch.setattr(archive_flow, "emit_event", lambda **kw: None)  # not a run the automation should see
    failures = [[f"bad/{i}.jpg", "not an image " + "x" * 900] for i in range(5)]

    @flow(name="report-caps")
    def report() -> dict[str, Any]:
        outcome = {"shard": 0, "counts": {"ok": 1, "failed": 5}, "failures": failures, "samples": [], "seconds": 0.0}
        return archive_flow._report("src", "capped-dest", {"model_id": "m", "already_done": 0}, [outcome], "run-1")

    state = report(return_state=True)
    drain_prefect_workers()
    with get_client(sync_client=True) as client:
        art = _artifacts(client, state.state_details.flow_run_id)["colorize-failures"]
        rows = json.loads(art.data)
        assert [r["source"] for r in rows] == ["bad/0.jpg", "bad/1.jpg", "bad/2.jpg"]
        assert all(len(r["reason"]) <= archive_flow.MAX_REASON_CHARS for r in rows)
        assert art.description.startswith("The first 3 of 5 failed sources")
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id]), level=LogFilterLevel(ge_=30)))
        messages = [log.message for log in logs]
        assert sum(m.startswith("failed: ") for m in messages) == 2
        assert "... and 3 more; see the colorize-failures artifact" in messages


def test_the_automation_file_is_a_plain_prefect_automation_too() -> None:
    """What `prefect automation create --from-file` does with it: the same trigger, no action
    (Prefect ignores the `notification:` section that flows.alerts reads)."""
    import yaml
    from prefect.events.schemas.automations import AutomationCore

    plain = AutomationCore.model_validate(yaml.safe_load(AUTOMATION_FILE.read_text()))
    assert plain.actions == [] and plain.trigger == load_automation().trigger
    notify = load_automation(block_document_id=UUID(int=1)).actions
    assert [(a.type, str(a.block_document_id)) for a in notify] == [("send-notification", str(UUID(int=1)))]
