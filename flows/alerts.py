"""The Prefect automations that alert on the nightly archive runs, created, or updated in place,
on the server PREFECT_API_URL names:

- infra/automation-failures.yaml: a colorize-archive run finished with failed sources;
- infra/automation-no-run.yaml: no colorize-archive run has finished for a destination within
  the window (default 30 h) since its last one (the night nothing happened).

    python -m flows.alerts create [--block TYPE/NAME] [--within 30h] [--file PATH]   (`make alerts [BLOCK=...] [WITHIN=...]`)
    python -m flows.alerts show [--block TYPE/NAME] [--within 30h] [--file PATH]     the automations as JSON, sent nowhere

`--within 36h` (s, m, h or d) sets the no-run automation's window; without it, an existing
automation keeps its window and a new one gets the file's (30 h).

`--block slack-webhook/colorize-ops` (any notification block: `prefect block ls` lists them)
makes the automations send their messages through that block. Without --block, an existing
automation keeps the block it already sends through, and a new one has no action: it fires all
the same (a `prefect.automation.triggered` event in the Event Feed), it just sends nothing.

Not `prefect automation create --from-file`: that makes a second automation each time it runs
(and a second alert for every failure), and a checked-in file cannot hold a block's id, which
differs on every server.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

INFRA = Path(__file__).resolve().parents[1] / "infra"
AUTOMATION_FILE = INFRA / "automation-failures.yaml"
NO_RUN_FILE = INFRA / "automation-no-run.yaml"
AUTOMATION_FILES = (AUTOMATION_FILE, NO_RUN_FILE)  # what `create` makes, in this order
MIN_PROACTIVE_WITHIN = timedelta(seconds=10)  # Prefect refuses a shorter proactive window
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_within(text: str) -> timedelta:
    """`30h`, `90m`, `1.5d`, `45s` as a timedelta. A unit is required: a bare number would be
    read as seconds by Prefect and as hours by a person."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if not m:
        raise ValueError(f"--within {text!r}: expected a number and a unit, s, m, h or d (e.g. 30h, 90m)")
    within = timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    if within < MIN_PROACTIVE_WITHIN:
        raise ValueError(f"--within {text}: Prefect's proactive triggers need at least 10s")
    return within


def _is_proactive(doc: dict[str, Any]) -> bool:
    return str((doc.get("trigger") or {}).get("posture", "")).lower() == "proactive"


def load_automation(path: Path = AUTOMATION_FILE, block_document_id: UUID | None = None, within: timedelta | None = None) -> Any:
    """The file's automation (an AutomationCore), with a send-notification action through the
    given block when there is one, and `within` as the window of a proactive trigger (the no-run
    automation) when given; a reactive trigger's window is not a setting, so it is left alone."""
    import yaml
    from prefect.events.schemas.automations import AutomationCore

    doc = yaml.safe_load(path.read_text())
    notification = doc.pop("notification", None) or {}
    actions = list(doc.get("actions") or [])
    if block_document_id is not None:
        actions.append({"type": "send-notification", "block_document_id": str(block_document_id), **notification})
    if within is not None and _is_proactive(doc):
        doc["trigger"] = {**doc["trigger"], "within": within.total_seconds()}
    return AutomationCore.model_validate({**doc, "actions": actions})


def notification_block_id(client: Any, slug: str) -> UUID:
    """The id of the notification block `TYPE/NAME` (e.g. `slack-webhook/colorize-ops`)."""
    from prefect.exceptions import ObjectNotFound

    block_type, sep, name = slug.partition("/")
    if not sep or not block_type or not name:
        raise SystemExit(f"--block {slug!r}: expected TYPE/NAME, e.g. slack-webhook/colorize-ops (`prefect block ls` lists them)")
    try:
        block = client.read_block_document_by_name(name=name, block_type_slug=block_type, include_secrets=False)
    except ObjectNotFound:
        raise SystemExit(f"--block {slug}: no such block on this server (`prefect block ls` lists them; create one in the UI under Blocks)") from None
    capabilities = block.block_schema.capabilities if block.block_schema else []
    if "notify" not in capabilities:
        raise SystemExit(f"--block {slug}: not a notification block (it cannot `notify`); use e.g. a Slack, Teams, email or custom webhook block")
    return UUID(str(block.id))


def _current_block(automation: Any) -> UUID | None:
    for action in automation.actions:
        if getattr(action, "type", None) == "send-notification":
            return UUID(str(action.block_document_id))
    return None


def _current_within(automation: Any) -> timedelta | None:
    trigger = automation.trigger
    return trigger.within if str(getattr(trigger, "posture", "")).endswith("Proactive") else None


def create_or_update(path: Path = AUTOMATION_FILE, block: str | None = None, within: timedelta | None = None) -> tuple[UUID, bool, UUID | None]:
    """Create the automation, or update the one of the same name; returns (id, created, the
    notification block's id or None). An existing automation keeps its block and its proactive
    window unless `block` / `within` name new ones (so a later plain `make alerts` undoes
    neither)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        name = load_automation(path).name
        existing = client.read_automations_by_name(name)
        block_id = notification_block_id(client, block) if block else (_current_block(existing[0]) if existing else None)
        if within is None and existing:
            within = _current_within(existing[0])
        automation = load_automation(path, block_id, within)
        if not existing:
            return client.create_automation(automation), True, block_id
        client.update_automation(existing[0].id, automation)
        for extra in existing[1:]:
            print(f"note: another automation is also named {name!r} ({extra.id}); `prefect automation delete --id {extra.id}`", file=sys.stderr)
        return existing[0].id, False, block_id


def _api_url() -> str | None:
    """The server Prefect would talk to: the environment or the active profile."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.alerts", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["create", "show"])
    parser.add_argument("--block", help="the notification block to send through, TYPE/NAME (e.g. slack-webhook/colorize-ops)")
    parser.add_argument(
        "--within", type=_within_arg, help="the no-run automation's window, e.g. 30h, 36h, 90m (default: the file's 30h, or what an existing automation has)"
    )
    parser.add_argument("--file", type=Path, action="append", help="an automation file, instead of both (repeatable; default: %s)" % ", ".join(str(f) for f in AUTOMATION_FILES))
    args = parser.parse_args(argv)
    files: list[Path] = args.file or list(AUTOMATION_FILES)
    if args.command == "create" and not _api_url():
        # Without it Prefect would start a temporary server and the automation would vanish with it.
        print("set PREFECT_API_URL to the Prefect server your runs report to (`make ui` serves http://127.0.0.1:4200/api)", file=sys.stderr)
        return 1
    if args.command == "show":
        block_id = None
        if args.block:
            from prefect.client.orchestration import get_client

            with get_client(sync_client=True) as client:
                block_id = notification_block_id(client, args.block)
        docs = [load_automation(f, block_id, args.within).model_dump(mode="json") for f in files]
        print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2))
        return 0
    for path in files:
        try:
            automation_id, created, block_id = create_or_update(path, args.block, args.within)
        except Exception as exc:  # noqa: BLE001 - one line, not a traceback: a server down, a bad file
            print(f"alerts: error: {path.name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} ({_api_url()})", file=sys.stderr)
            return 1
        how = f"notifies through block {args.block or block_id}" if block_id else "no notification block: it records its firings only (--block TYPE/NAME to add one)"
        print(f"{'created' if created else 'updated'} automation {automation_id} ({path.name}); {how}")
    return 0


def _within_arg(text: str) -> timedelta:
    try:
        return parse_within(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--within {text!r}: ")) from None


if __name__ == "__main__":
    sys.exit(main())
