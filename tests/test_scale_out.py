"""Scale-out: colorize-archive runs a few flow runs on a work pool through `run_deployment`, each
working through the shards it claims, against a real Prefect server and a `process` worker
started here (the same path a Kubernetes pool with one GPU per pod takes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.settings import PREFECT_API_URL, temporary_settings

from colorize_core.archive.history import read_output_rows
from colorize_core.storage.stores import open_store
from flows.colorize_archive import colorize_archive, colorize_shard_flow
from tests.conftest import gray_archive
from tests.prefect_server import drain_prefect_workers, prefect_server, process_worker

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_shards_run_as_flow_runs_on_a_process_work_pool(tmp_path: Path, tiny_checkpoint: Path) -> None:
    keys = gray_archive(str(tmp_path / "gray"), 5)
    with prefect_server(tmp_path / "prefect-home") as (api_url, env), temporary_settings({PREFECT_API_URL: api_url}):
        with process_worker("scale-test", env, tmp_path / "worker.log"):
            flow = colorize_shard_flow.from_source(source=str(ROOT), entrypoint="flows/colorize_archive.py:colorize_shard_flow")
            flow.deploy(name="shard", work_pool_name="scale-test", build=False, push=False, print_next_steps=False)
            summary = colorize_archive(
                str(tmp_path / "gray"), str(tmp_path / "out"), checkpoint=str(tiny_checkpoint), shard_size=2,
                device="cpu", deployment="colorize-shard/shard", pool_workers=2,
            )
        assert summary.ok == 5 and summary.failed == 0
        assert sorted(r["key"] for r in read_output_rows(str(tmp_path / "out"))) == sorted(keys)
        with get_client(sync_client=True) as client:
            runs = [r for r in client.read_flow_runs() if r.deployment_id is not None]
            assert len(runs) == 2  # two workers for 5 images in 3 shards of 2
            assert all(r.state is not None and r.state.is_completed() for r in runs)
            assert {r.parameters["shard"] for r in runs} == {0, 1} and all(r.parameters["claim"] for r in runs)  # where each began
            # Progress counts shards (3), not worker runs (2): it ends at 100%.
            (progress,) = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["colorize-progress"])))
            assert float(progress.data) == 100.0  # type: ignore[arg-type]
        assert not list(open_store(str(tmp_path / "out")).list("_colorize/claims/"))  # the run's claims went with it
        drain_prefect_workers()
