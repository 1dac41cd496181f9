"""The demo pipeline, checked through the Prefect API (not the logs): runs, states, artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterParentFlowRunId

from flows.demo import HELD_OUT, DemoLayout, NotADemoFolder, clear_previous, demo

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_demo_runs_are_recorded_with_their_tasks_and_artifacts(tmp_path: Path) -> None:
    state = demo(out=str(tmp_path / "demo"), seconds=2, image_size=32, device="cpu", return_state=True)
    assert state.is_completed()
    result = state.result()
    assert result["colorized"]["ok"] == result["photos"] and result["colorized"]["failed"] == 0
    root = tmp_path / "demo"
    assert len(list((root / "colorized").glob("*.*"))) == result["photos"]
    assert (root / "colorized" / "_colorize" / "gallery.html").read_text().count("<img") >= 2
    assert json.loads((root / "demo-summary.json").read_text())["trained"]["model_id"] == result["trained"]["model_id"]
    # Scored only on the photos it never trained on; those are not in the training set.
    held_out = sorted(p.name for p in (root / "held-out").iterdir())
    assert held_out == sorted(HELD_OUT) and result["eval"]["images"] == len(HELD_OUT)
    assert not set(held_out) & {p.name for p in (root / "photos").iterdir()}
    assert result["dataset"]["sources"] == result["photos"] - len(HELD_OUT)

    parent_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        parent = client.read_flow_run(parent_id)
        assert parent.state is not None and parent.state.is_completed()
        children = client.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id])))
        subflows = {client.read_flow(run.flow_id).name: run for run in children}
        task_runs = client.read_task_runs()
        names = {tr.name.rsplit("-", 1)[0] for tr in task_runs if tr.flow_run_id == parent_id}
        assert {"make_archives", "evaluate_task"} <= names
        assert set(subflows) == {"build-dataset", "train-model", "colorize-archive"}
        assert all(r.state is not None and r.state.is_completed() for r in subflows.values())
        shard_tasks = [tr for tr in task_runs if tr.flow_run_id == subflows["colorize-archive"].id and tr.name.startswith("colorize_shard_task")]
        assert shard_tasks and all(tr.state is not None and tr.state.is_completed() for tr in shard_tasks)
        keys = set()
        for run in subflows.values():
            arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
            keys |= {a.key for a in arts}
            progress = [a for a in arts if a.type == "progress"]
            assert all(float(a.data) == 100.0 for a in progress)
        assert {"colorize-progress", "colorize-counts", "colorize-gallery", "train-loss", "train-report", "train-progress", "build-dataset-counts"} <= keys


def test_a_second_demo_starts_afresh_and_removes_only_its_own_outputs(tmp_path: Path) -> None:
    layout = DemoLayout(tmp_path)
    for folder in (layout.photos, layout.dataset / "shards", layout.registry):
        folder.mkdir(parents=True)
        (folder / "old").write_text("x")
    layout.checkpoint.write_bytes(b"old model")
    (tmp_path / "notes.txt").write_text("the user's")
    # Folders of the demo's names that no demo marked are someone's data: refused, kept.
    with pytest.raises(NotADemoFolder, match="not written by a demo"):
        clear_previous(layout)
    assert (layout.photos / "old").is_file() and layout.checkpoint.is_file()
    layout.marker.write_text("demo")
    removed = clear_previous(layout)
    assert {p.name for p in removed} == {"photos", "dataset", "registry", "model.safetensors", ".colorize-demo"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
