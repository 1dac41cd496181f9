"""What the alert tests share: a loopback webhook that records what Prefect's notification
blocks send, and `python -m flows.alerts create` run as an operator runs it (`make alerts`)."""

from __future__ import annotations

import json
import subprocess
import sys
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parents[1]


def webhook_handler() -> type[BaseHTTPRequestHandler]:
    """A request handler class of its own (its own `received` list) for a ThreadingHTTPServer."""

    class Webhook(BaseHTTPRequestHandler):
        received: ClassVar[list[dict[str, Any]]] = []

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            type(self).received.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Webhook


def alerts_cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "flows.alerts", "create", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout
