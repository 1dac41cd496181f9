"""The Prefect server on PostgreSQL, for real: start PostgreSQL (Debian's packages), start
`prefect server start` on it, run a small colorize-archive flow through it, read it back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.colorize_archive import colorize_archive
from tests.conftest import gray_archive
from tests.postgres import postgres_bin, postgres_server, psql
from tests.prefect_server import drain_prefect_workers, prefect_server

# In CI a missing PostgreSQL is a failure (.ci/run installs it); elsewhere the test is skipped.
needs_postgres = pytest.mark.skipif(postgres_bin() is None and not os.environ.get("CI"), reason="PostgreSQL not installed")


@pytest.mark.slow
@needs_postgres
def test_colorize_archive_through_a_postgres_backed_server(tmp_path: Path, tiny_checkpoint: Path) -> None:
    gray_archive(str(tmp_path / "gray"), 3)
    with postgres_server() as db_url, prefect_server(tmp_path / "home", database_url=db_url) as (api_url, _):
        with temporary_settings({PREFECT_API_URL: api_url}):
            state = colorize_archive(
                str(tmp_path / "gray"), str(tmp_path / "out"), checkpoint=str(tiny_checkpoint), device="cpu", return_state=True
            )
            assert state.is_completed() and state.result().ok == 3
            with get_client(sync_client=True) as client:
                run = client.read_flow_run(state.state_details.flow_run_id)
                assert run.state is not None and run.state.is_completed()
                assert client.read_flow(run.flow_id).name == "colorize-archive"
                assert client.read_flow_run_states(run.id)[-1].is_completed()
            drain_prefect_workers()
        # The run is in PostgreSQL's tables: the server stored it there, not in a SQLite file.
        row = psql(db_url, f"SELECT f.name, r.state_type FROM flow_run r JOIN flow f ON f.id = r.flow_id WHERE r.id = '{run.id}'")
        assert row == "colorize-archive|COMPLETED"
