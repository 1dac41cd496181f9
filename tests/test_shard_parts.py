"""A shard commits its metadata in parts: a killed run loses at most a part, and what it had
committed is not done again, by the next run or by a retry of the same shard."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from colorize_core.archive.history import read_output_rows
from colorize_core.archive.layout import META_PREFIX, metadata_key
from colorize_core.archive.shards import colorize_shard, plan_archive, run_outcomes, shared_colorizer
from colorize_core.model.checkpoint import read_model_id
from colorize_core.storage.errors import Interrupted, forget_run, run_stop
from colorize_core.storage.stores import open_store
from tests.conftest import gray_archive

pytestmark = pytest.mark.usefixtures("prefect_harness")  # two of them run flows


def _killed_after(run_id: str, images: int) -> object:
    seen = [0]

    def on_image(n: int) -> None:
        seen[0] += n
        if seen[0] >= images:
            run_stop(run_id).set()  # what a signal or a lost lease does: the next batch does not start

    return on_image


def test_a_killed_run_redoes_only_what_its_parts_did_not_commit(tmp_path: Path, tiny_checkpoint: Path) -> None:
    src, dest = str(tmp_path / "gray"), str(tmp_path / "out")
    gray_archive(src, 7)
    model_id = read_model_id(tiny_checkpoint)
    colorizer = shared_colorizer(str(tiny_checkpoint), "cpu", batch_size=2)
    plan = plan_archive(src, dest, model_id, shard_size=10)
    items = plan.shard(0)
    try:
        with pytest.raises(Interrupted):
            colorize_shard(src, dest, items, colorizer, run_id="run-1", shard=0, io_threads=0, part_rows=2, on_image=_killed_after("run-1", 4))
    finally:
        forget_run("run-1")
    store = open_store(dest)
    assert sorted(o.key for o in store.list(META_PREFIX)) == [metadata_key("run-1", 0, 0), metadata_key("run-1", 0, 1)]  # no last part: not done
    assert [r["key"] for r in read_output_rows(dest)] == [o.key for o in items[:4]]

    again = plan_archive(src, dest, model_id, shard_size=10)
    assert again.todo["key"].to_pylist() == [o.key for o in items[4:]] and again.already_done == 4
    written = [o.key for o in store.list() if not o.key.startswith("_colorize/")]
    outcome = colorize_shard(src, dest, again.shard(0), colorizer, run_id="run-2", shard=0, io_threads=0, part_rows=2)
    assert outcome.counts == {"ok": 3}
    assert sorted(r["key"] for r in read_output_rows(dest)) == sorted(o.key for o in items)  # each photo once
    assert len([o.key for o in store.list() if not o.key.startswith("_colorize/")]) == len(written) + 3


def test_a_retried_shard_goes_on_after_its_committed_parts(tmp_path: Path, tiny_checkpoint: Path) -> None:
    src, dest = str(tmp_path / "gray"), str(tmp_path / "out")
    gray_archive(src, 5)
    colorizer = shared_colorizer(str(tiny_checkpoint), "cpu", batch_size=2)
    items = plan_archive(src, dest, read_model_id(tiny_checkpoint), shard_size=10).shard(0)
    try:
        with pytest.raises(Interrupted):
            colorize_shard(src, dest, items, colorizer, run_id="run-1", shard=0, io_threads=0, part_rows=2, on_image=_killed_after("run-1", 2))
    finally:
        forget_run("run-1")
    seen: list[int] = []
    outcome = colorize_shard(src, dest, items, colorizer, run_id="run-1", shard=0, io_threads=0, part_rows=2, on_image=seen.append)
    assert sum(seen) == 3  # the two committed ones were not colorized again
    assert outcome.counts == {"ok": 5}  # the shard's outcome covers its earlier parts
    rows = read_output_rows(dest)
    assert sorted(r["key"] for r in rows) == sorted(o.key for o in items) and len(rows) == 5
    assert [o.counts for o in run_outcomes(dest, "run-1")] == [{"ok": 5}]  # what a parent flow reads back


def test_a_worker_takes_every_shard_it_can_claim_and_leaves_the_claimed_ones(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """One flow run per worker slot: it works through the plan from its first shard, skipping
    the shards another worker claimed (here one that died holding shard 1: it stays undone)."""
    from colorize_core.archive.claims import claim, claim_order
    from colorize_core.archive.layout import plan_key
    from colorize_core.archive.listing import write_plan
    from colorize_core.storage.stores import child_uri
    from flows.colorize_archive import colorize_shard_flow

    src, dest = str(tmp_path / "gray"), str(tmp_path / "out")
    gray_archive(src, 5)
    plan = plan_archive(src, dest, read_model_id(tiny_checkpoint), shard_size=2)
    uri = child_uri(dest, plan_key("20261202T020000-0000abcd"))
    write_plan(plan.manifest(), plan.source, 2, uri)
    run_id = "20261202T020000-0000abcd"
    assert claim(dest, run_id, 1) and not claim(dest, run_id, 1)  # a claim is taken once
    assert claim_order(2, 3) == [2, 0, 1]
    result = colorize_shard_flow(uri, 2, dest, str(tiny_checkpoint), run_id, device="cpu", claim=True)
    assert [(o.shard, o.counts) for o in result] == [(2, {"ok": 1}), (0, {"ok": 2})]
    assert [o.shard for o in run_outcomes(dest, run_id)] == [0, 2]  # shard 1: its worker died
    again = plan_archive(src, dest, read_model_id(tiny_checkpoint), shard_size=2)
    assert again.todo["key"].to_pylist() == [o.key for o in plan.shard(1)]  # what the next run does


def test_a_run_past_its_time_limit_stops_and_fails_in_one_line(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """The time limit stops the shards as a signal does and fails the run, naming the limit; the
    next run does what is left."""
    from flows.colorize_archive import colorize_archive

    src, dest = str(tmp_path / "gray"), str(tmp_path / "out")
    gray_archive(src, 3)
    with pytest.raises(RuntimeError, match=r"passed its time limit of 0 h and stopped .* raise time_limit_h"):
        colorize_archive(src, dest, checkpoint=str(tiny_checkpoint), device="cpu", allow_untrained=True, time_limit_h=0.0)
    assert read_output_rows(dest) == []
    summary = colorize_archive(src, dest, checkpoint=str(tiny_checkpoint), device="cpu", allow_untrained=True)
    assert summary.ok == 3


def test_a_model_retrained_to_the_same_uri_is_loaded_anew(tmp_path: Path) -> None:
    """A long-lived worker shares one model per checkpoint, but never serves the old weights
    of a checkpoint that was overwritten by a retrained model."""
    import torch

    from colorize_core.model.checkpoint import save_checkpoint
    from colorize_core.model.models import ModelConfig, build_model

    path = tmp_path / "model.safetensors"
    ids = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        save_checkpoint(path, build_model(ModelConfig(image_size=32), backbone_weights="none"), meta={"note": f"seed {seed}"})
        first = shared_colorizer(str(path), "cpu")
        assert shared_colorizer(str(path), "cpu") is first  # shared while the file is the same
        ids.append(first.model_id)
    assert ids[0] != ids[1]


def test_finished_shards_counts_the_shards_with_their_last_part(tmp_path: Path) -> None:
    """A pool run's progress: shards whose last part is committed; earlier parts, other runs'
    files and compacted files do not count."""
    from colorize_core.archive.layout import compacted_key, metadata_key
    from colorize_core.archive.shards import finished_shards
    from colorize_core.storage.stores import open_store

    store = open_store(tmp_path)
    for key in (metadata_key("run-a", 0, 0), metadata_key("run-a", 0), metadata_key("run-a", 1, 0), metadata_key("run-a", 1, 1), metadata_key("run-a", 2), metadata_key("run-b", 3)):
        store.write(key, b"")
    store.write(compacted_key(datetime(2026, 1, 1, tzinfo=timezone.utc)), b"")
    assert finished_shards(str(tmp_path), "run-a") == 2  # shards 0 and 2; shard 1 has parts only
    assert finished_shards(str(tmp_path), "run-c") == 0
