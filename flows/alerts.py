"""The Prefect automation that alerts when a colorize-archive run finishes with failed sources
(infra/automation-failures.yaml): created, or updated in place, on the server PREFECT_API_URL
names.

    python -m flows.alerts create [--block TYPE/NAME] [--file PATH]    (`make alerts [BLOCK=...]`)
    python -m flows.alerts show [--block TYPE/NAME] [--file PATH]      the automation as JSON, sent nowhere

`--block slack-webhook/colorize-ops` (any notification block: `prefect block ls` lists them)
makes the automation send its message through that block. Without --block, an existing
automation keeps the block it already sends through, and a new one has no action: it fires all
the same (a `prefect.automation.triggered` event in the Event Feed), it just sends nothing.

Not `prefect automation create --from-file`: that makes a second automation each time it runs
(and a second alert for every failure), and a checked-in file cannot hold a block's id, which
differs on every server.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

AUTOMATION_FILE = Path(__file__).resolve().parents[1] / "infra" / "automation-failures.yaml"


def load_automation(path: Path = AUTOMATION_FILE, block_document_id: UUID | None = None) -> Any:
    """The file's automation (an AutomationCore), with a send-notification action through the
    given block when there is one."""
    import yaml
    from prefect.events.schemas.automations import AutomationCore

    doc = yaml.safe_load(path.read_text())
    notification = doc.pop("notification", None) or {}
    actions = list(doc.get("actions") or [])
    if block_document_id is not None:
        actions.append({"type": "send-notification", "block_document_id": str(block_document_id), **notification})
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


def create_or_update(path: Path = AUTOMATION_FILE, block: str | None = None) -> tuple[UUID, bool, UUID | None]:
    """Create the automation, or update the one of the same name; returns (id, created, the
    notification block's id or None)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        name = load_automation(path).name
        existing = client.read_automations_by_name(name)
        block_id = notification_block_id(client, block) if block else (_current_block(existing[0]) if existing else None)
        automation = load_automation(path, block_id)
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
    parser.add_argument("--file", type=Path, default=AUTOMATION_FILE, help="the automation file (default: %(default)s)")
    args = parser.parse_args(argv)
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
        print(json.dumps(load_automation(args.file, block_id).model_dump(mode="json"), indent=2))
        return 0
    try:
        automation_id, created, block_id = create_or_update(args.file, args.block)
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback: a server down, a bad file
        print(f"alerts: error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} ({_api_url()})", file=sys.stderr)
        return 1
    how = f"notifies through block {args.block or block_id}" if block_id else "no notification block: it records its firings only (--block TYPE/NAME to add one)"
    print(f"{'created' if created else 'updated'} automation {automation_id}; {how}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
