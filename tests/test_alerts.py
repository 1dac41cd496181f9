"""What a colorize-archive run shows in Prefect and tells it, through a real Prefect server (its
triggers, actions and event-persister services on): the failures automation, created by
`python -m flows.alerts create`, fires, and sends its notification, for a run with a corrupt
photo and not for a clean one; the run's state, artifacts and warnings, read back through the
API; and what an operator sees of them in the Prefect UI, in a real browser (headless Chromium):
the runs list's badge, the run page, the gallery artifact with a hostile file name, the Event
Feed filtered by destination."""

from __future__ import annotations

import html
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote
from uuid import UUID

import httpx
import pytest
from markdown_it import MarkdownIt
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

from colorize_core.archive.gallery import MARKDOWN_NAME_CHARS
from colorize_core.archive.markup import markdown_code, shorten_middle
from colorize_core.archive.outcomes import ArchiveSummary, PlanSummary, ShardOutcome
from flows import reporting
from flows.alerts import AUTOMATION_FILE, load_automation
from flows.colorize_archive import colorize_archive
from tests.browser import Browser, needs_browser
from tests.conftest import gray_archive
from tests.webhook import alerts_cli, webhook_handler
from tests.prefect_server import drain_prefect_workers, prefect_server

pytestmark = pytest.mark.prefect  # a Prefect server of its own: not in `make test-fast`

BLOCK = "custom-webhook/colorize-test"
# A failing source (a text file, not a photo) whose name is markup too: the failures table and
# the notification must show it as text.
CORRUPT = "box 9/x` | ![t](t.png) <b>y.jpg"
# A photo whose name is markup (S3 keys are anyone-with-write-access's text): it must show as text.
HOSTILE = "box 3/x` | ![t](track.png) | `y <img src=x onerror=window.XSS=1> www.example.org.png"
# Where the browser test leaves its screenshots besides tmp_path (the README's docs/ui-runs.png).
SCREENSHOTS_ENV = "COLORIZE_UI_SCREENSHOTS"

SERVER_SETTINGS = {
    # The services the alert needs, on whatever the defaults become: triggers (which also gates
    # the actions service) and the event persister (the events API reads what it stored).
    "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "true",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "true",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "0.5",
}


_Webhook = webhook_handler()
_alerts_cli = alerts_cli


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
                    Path(failing_src, "box 3/photo_012.png").rename(Path(failing_src, HOSTILE))
                    Path(failing_src, CORRUPT).parent.mkdir(parents=True, exist_ok=True)
                    Path(failing_src, CORRUPT).write_text("a text file, not a photograph\n")
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
    # The Event Feed's card names resources by prefect.resource.name: the destination, and the
    # outcome with its counts.
    assert failing_event["resource"]["prefect.resource.name"] == alert_setup["failing_dest"]
    assert failing_event["resource"]["colorize.failed"] == "1" and failing_event["resource"]["colorize.ok"] == "3"
    assert failing_event["resource"]["colorize.known_failed"] == "0"  # every count a label, zeros too
    names = {r["prefect.resource.role"]: r.get("prefect.resource.name") for r in failing_event["related"]}
    assert names["colorize-outcome"] == "Completed with failures: 3 ok, 1 failed, 0 skipped as colour, 0 already done"
    assert names["colorize-source"] == f"from {Path(alert_setup['failing_dest']).with_name('failing')}"
    assert payload["dest"] == alert_setup["failing_dest"] and payload["run_id"] and payload["model_id"]
    assert [f["source"] for f in payload["first_failures"]] == [CORRUPT]

    # The notification, rendered from the event and its flow run, reached the webhook.
    (sent,) = _wait_for("the notification", lambda: _Webhook.received)
    assert sent["subject"] == f"colorize-archive: 1 failed in {alert_setup['failing_dest']}"
    assert sent["body"].startswith("3 ok, 1 failed, 0 skipped as colour, 0 already done: colorize-archive run ")
    # The hostile name as text: escaped (Prefect's templates do not escape; the file's `| e` does).
    assert f"failed sources:\n- {html.escape(CORRUPT)}: not an image" in sent["body"]
    assert "<b>" not in sent["body"] and "&lt;b&gt;" in sent["body"]
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
    summary = failing.result()  # return_state=True callers: the ArchiveSummary is the state's data
    assert summary.failed == 1 and summary.failures[0][0] == CORRUPT
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(failing.state_details.flow_run_id)
        # Type COMPLETED either way (what succeeded is written); the name, the run list's badge, differs.
        assert run.state is not None and run.state.is_completed() and run.state.name == "Completed with failures"
        assert run.state.message == "3 ok, 1 failed, 0 skipped as colour, 0 already done"
        clean_run = client.read_flow_run(clean.state_details.flow_run_id)
        assert clean_run.state is not None and clean_run.state.is_completed() and clean_run.state.name == "Completed"
        assert clean_run.state.message == "3 ok, 0 failed, 0 skipped as colour, 0 already done"

        arts = _artifacts(client, run.id)
        assert {"colorize-counts", "colorize-failures", "colorize-progress", "colorize-gallery"} <= set(arts)
        assert json.loads(arts["colorize-counts"].data) == [
            {"photos": "ok", "count": 3}, {"photos": "failed", "count": 1}, {"photos": "skipped as colour", "count": 0}, {"photos": "already done", "count": 0},
        ]
        assert "3 ok, 1 failed" in arts["colorize-counts"].description
        rows = json.loads(arts["colorize-failures"].data)
        assert [set(r) for r in rows] == [{"source", "reason"}] and rows[0]["source"] == markdown_code(CORRUPT) and rows[0]["reason"]
        # The UI renders each cell as markdown: the hostile name is one code span, no markup.
        cell = MarkdownIt("commonmark").renderInline(rows[0]["source"])
        assert cell == f"<code>{html.escape(CORRUPT, quote=False)}</code>", cell
        assert arts["colorize-failures"].description.startswith("1 failed source ")
        # A clean run makes an empty failures table, so that the artifact catalogue (the latest
        # version of each key) never shows an earlier run's failures as current.
        clean_arts = _artifacts(client, clean_run.id)
        assert json.loads(clean_arts["colorize-failures"].data) == []
        assert clean_arts["colorize-failures"].description.startswith("No failed sources")
        # Every run makes its gallery, saying which run it is, so the Artifacts page never shows
        # an earlier run's photos as this one's.
        gallery = str(arts["colorize-gallery"].data)
        assert gallery.startswith(f"Run ` {run.name} ` (colorize run ` ")
        assert "**1 photo failed**" in gallery and "`colorize-failures`" in gallery
        assert str(clean_arts["colorize-gallery"].data).startswith(f"Run ` {clean_run.name} `")

        warnings = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id]), level=LogFilterLevel(ge_=30)))
        assert any(w.message.startswith(f"failed: {CORRUPT}: ") for w in warnings)
        assert not client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[clean_run.id]), level=LogFilterLevel(ge_=30)))


def test_failure_tables_and_warnings_are_capped(alert_setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reporting, "MAX_FAILURE_ROWS", 3)
    monkeypatch.setattr(reporting, "MAX_FAILURE_LOGS", 2)
    monkeypatch.setattr(reporting, "emit_event", lambda **kw: None)  # not a run the automation should see
    failures = [(f"bad/{i}.jpg", "not an image " + "x" * 900) for i in range(5)]

    @flow(name="report-caps")
    def report() -> ArchiveSummary:
        outcome = ShardOutcome(0, counts={"ok": 1, "failed": 5}, failures=failures)
        return reporting.report_run("src", "capped-dest", PlanSummary("m", todo=6, already_done=0, known_failed=0, shards=1), [outcome], "run-1")

    state = report(return_state=True)
    drain_prefect_workers()
    with get_client(sync_client=True) as client:
        art = _artifacts(client, state.state_details.flow_run_id)["colorize-failures"]
        rows = json.loads(art.data)
        assert [r["source"] for r in rows] == [markdown_code(f"bad/{i}.jpg") for i in range(3)]
        assert all(len(r["reason"]) <= reporting.MAX_REASON_CHARS + len("`  `") for r in rows)  # the reason, clipped, in a code span
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


def _ui_base(api_url: str) -> str:
    """Where the server's default UI lives (Prefect 3.9 serves V2 under /v2 and makes it the
    default), after checking that the UI was told where its API is (PREFECT_UI_API_URL:
    without it, a server on another port than 4200 has a UI that cannot reach it)."""
    root = api_url.removesuffix("/api")
    settings = httpx.get(f"{root}/ui-settings", timeout=10).json()
    assert settings["api_url"] == api_url
    v2 = settings.get("default_ui") == "v2"
    return root + (str(settings.get("v2_base_url") or "/v2").rstrip("/") if v2 else "")


def _card_of(b: Browser, name: str) -> str:
    """The text of the runs list's row for the flow run `name`: from its link up to the first
    ancestor that also holds a state badge."""
    # Polled: the list refreshes itself, and a row read while it re-renders is not there.
    return str(b.wait_for(
        f"""(() => {{ const link = Array.from(document.querySelectorAll('a')).find(a => a.innerText.trim() === {json.dumps(name)});
          for (let e = link; e; e = e.parentElement) if (/Completed|Failed|Crashed/.test(e.innerText)) return e.innerText;
          return ''; }})()""",
        f"the runs list's row for {name}",
    ))


def _keep_screenshot(shot: Path, name: str) -> None:
    if os.environ.get(SCREENSHOTS_ENV):
        shutil.copyfile(shot, Path(os.environ[SCREENSHOTS_ENV]) / name)


@needs_browser
def test_what_the_operator_sees_in_the_prefect_ui(alert_setup: dict[str, Any], tmp_path: Path) -> None:
    api_url = alert_setup["api_url"]
    base = _ui_base(api_url)
    failing_id, clean_id = alert_setup["failing"].state_details.flow_run_id, alert_setup["clean"].state_details.flow_run_id
    with get_client(sync_client=True) as client:
        failing_name, clean_name = client.read_flow_run(failing_id).name, client.read_flow_run(clean_id).name
        gallery = _artifacts(client, failing_id)["colorize-gallery"]

    with Browser(1280, 760) as b:
        # The runs list: a run with failed photos has its own badge; a clean run plain "Completed".
        b.goto(f"{base}/runs")
        b.wait_for(f"document.body.innerText.includes({json.dumps(failing_name)}) && document.body.innerText.includes({json.dumps(clean_name)})", "both runs in the list")
        b.wait_for("document.body.innerText.includes('Completed with failures')", "the badges")
        failing_card, clean_card = _card_of(b, failing_name), _card_of(b, clean_name)
        assert "Completed with failures" in failing_card
        assert "Completed" in clean_card and "with failures" not in clean_card
        b.eval("window.scrollTo(0, document.body.scrollHeight)")  # the list is below the chart
        _keep_screenshot(b.screenshot(tmp_path / "runs.png"), "ui-runs.png")

        # The run page: the same badge in its header, the counts in its log.
        b.goto(f"{base}/runs/flow-run/{failing_id}")
        b.wait_for("document.body.innerText.includes('Completed with failures')", "the run page's badge")

        # The gallery artifact: it fits beside the run's details at 1280 px; the hostile name is
        # text (its table keeps three columns, no image but ours, no script ran).
        b.goto(f"{base}/artifacts/artifact/{gallery.id}")
        # One evaluation both waits for the six thumbnails and reads the table: the UI may render
        # the artifact again between two evaluations (CI once found no table in a second one).
        seen = b.wait_for(
            """(() => { const t = document.querySelector('table'); const imgs = t ? Array.from(t.querySelectorAll('img')) : [];
              if (imgs.length !== 6 || !imgs.every(i => i.complete)) return null;
              return {rows: Array.from(t.querySelectorAll('tr')).map(r => r.children.length),
                srcs: Array.from(document.querySelectorAll('img')).map(i => i.getAttribute('src') || '').filter(s => !s.startsWith('data:') && !s.includes('/ico/') && !s.endsWith('.svg')),
                links: Array.from(t.querySelectorAll('a')).length, right: Math.max(...Array.from(t.querySelectorAll('img')).map(i => i.getBoundingClientRect().right)),
                codes: Array.from(t.querySelectorAll('code')).map(c => c.innerText), titles: Array.from(t.querySelectorAll('img')).map(i => i.title),
                xss: window.XSS || null, text: document.body.innerText}; })()""",
            "the gallery's thumbnails",
        )
        assert seen["rows"] == [3, 3, 3, 3] and seen["srcs"] == [] and seen["links"] == 0 and seen["xss"] is None
        assert seen["right"] <= 1280  # the "after" column is on screen
        assert shorten_middle(HOSTILE, MARKDOWN_NAME_CHARS) in seen["codes"] and HOSTILE in seen["titles"]
        assert "1 photo failed" in seen["text"] and failing_name in seen["text"]
        _keep_screenshot(b.screenshot(tmp_path / "gallery.png"), "ui-gallery.png")

        # The Event Feed, filtered by destination (its URL matches resource ids by prefix): the
        # card names the destination and says the outcome with its counts.
        if base.endswith("/v2"):  # the filter's URL form is V2's
            dest = alert_setup["failing_dest"]
            _wait_for("the finished event stored", lambda: _events(api_url, {"event": {"name": ["colorize.archive.finished"]}, "resource": {"id": [f"colorize.destination.{dest}"]}}))
            # An explicit range: the default "past day" ends at the start of the current minute,
            # which leaves out an event of the last few seconds.
            now = datetime.now(timezone.utc)
            start, end = ((now + timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%S.000Z") for h in (-1, 1))
            b.goto(f"{base}/events?resource=" + quote(json.dumps([f"colorize.destination.{dest}"])) + f"&rangeType=range&start={start}&end={end}")
            b.wait_for("document.body.innerText.includes('Completed with failures: 3 ok, 1 failed')", "the finished event's card")
            text = b.text()
            assert dest in text and alert_setup["clean_dest"] not in text
            _keep_screenshot(b.screenshot(tmp_path / "events.png"), "ui-events.png")
