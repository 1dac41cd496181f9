"""The Prefect pipeline end to end, on a local folder and on the test S3 server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from colorize_core.archive.history import read_output_rows
from colorize_core.archive.vocabulary import COMPLETED, COMPLETED_WITH_FAILURES, outcome_message
from colorize_core.storage.imageio import decode, luma_and_alpha
from colorize_core.storage.objects import StorageError
from colorize_core.storage.stores import open_store
from colorize_core.training.registry import resolve_checkpoint
from flows.build_dataset import build_dataset_flow
from flows.colorize_archive import colorize_archive
from flows.nightly import nightly
from flows.train_model import train_model
from tests.badfiles import bad_corpus
from tests.conftest import gray_archive, make_photo

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _colour_archive(uri: str, n: int) -> None:
    rng = np.random.default_rng(77)
    store = open_store(uri)
    for i in range(n):
        buf = __import__("io").BytesIO()
        make_photo(rng, 48, 48).save(buf, format="JPEG", quality=92)
        store.write(f"colour_{i}.jpg", buf.getvalue())


def test_full_pipeline_then_incremental_nightly_runs(store_uri: str, tmp_path: Path) -> None:
    root = store_uri.rstrip("/")
    registry = f"{root}/registry"
    _colour_archive(f"{root}/colour", 6)
    ds = build_dataset_flow(f"{root}/colour", f"{root}/dataset", size=32, shard_size=4)
    assert ds.rows == 6 and ds.failed == 0
    trained = train_model(
        f"{root}/dataset", f"{root}/models/m.safetensors", steps=2, image_size=32, batch_size=3,
        backbone_weights="none", optimizer="adam", lr=1e-3, device="cpu", registry=registry,
    )
    assert resolve_checkpoint("latest", registry=registry) == f"{root}/models/m.safetensors"

    gray, out = f"{root}/gray", f"{root}/colorized"
    keys = gray_archive(gray, 5)
    first = nightly(gray, out, checkpoint="latest", shard_size=2, device="cpu", registry=registry)
    assert (first.ok, first.failed, first.already_done) == (5, 0, 0)
    assert first.model_id == trained["model_id"]
    src, dst = open_store(gray), open_store(out)
    for key in keys:  # the outputs' luminance is the inputs' gray level
        y_in, _ = luma_and_alpha(decode(src.read(key)))
        out_img = decode(dst.read(key))
        assert out_img.mode == "RGB" and out_img.size == (y_in.shape[1], y_in.shape[0])
        y_out = np.asarray(out_img.convert("L"), dtype=np.float64)
        assert np.abs(y_out - y_in * 255).max() <= 1.0
    rows = read_output_rows(out)
    assert sorted(r["key"] for r in rows) == sorted(keys)
    assert all(r["status"] == "ok" and r["output_key"] == r["key"] and r["model_id"] == trained["model_id"] for r in rows)
    assert all(r["width"] > 0 and r["colourfulness"] is not None and r["infer_s"] > 0 for r in rows)

    second = nightly(gray, out, checkpoint="latest", shard_size=2, device="cpu", registry=registry)
    assert (second.ok, second.already_done) == (0, 5)
    assert len(read_output_rows(out)) == 5  # nothing duplicated

    new_keys = gray_archive(gray, 2, start=100)
    third = nightly(gray, out, checkpoint="latest", shard_size=2, device="cpu", registry=registry)
    assert (third.ok, third.already_done) == (2, 5)
    rows = read_output_rows(out)
    assert len(rows) == 7 and {r["key"] for r in rows} == set(keys) | set(new_keys)


def test_a_nightly_run_with_failures_is_named_so_and_retries_known_failures_on_request(tmp_path: Path, tiny_checkpoint: Path) -> None:
    src, out = str(tmp_path / "bw"), str(tmp_path / "out")
    gray_archive(src, 1)
    open_store(src).write("text.jpg", b"a text file, not a photograph\n" * 20)
    run = {"checkpoint": str(tiny_checkpoint), "device": "cpu"}
    first = nightly(src, out, **run, return_state=True)
    summary = first.result()
    assert (summary.ok, summary.failed) == (1, 1)
    assert first.is_completed() and first.name == COMPLETED_WITH_FAILURES and first.message == outcome_message(summary.counts)
    second = nightly(src, out, **run, return_state=True)  # the known failure is left alone
    assert second.name == COMPLETED and second.result().known_failed == 1
    third = nightly(src, out, **run, retry_failed=True)
    assert (third.failed, third.known_failed) == (1, 0)


def test_bad_files_become_failed_rows(store_uri: str, tiny_checkpoint: Path) -> None:
    root = store_uri.rstrip("/")
    src = open_store(f"{root}/bad")
    corpus = bad_corpus()
    for key, (data, _) in corpus.items():
        src.write(key, data)
    summary = colorize_archive(f"{root}/bad", f"{root}/out", checkpoint=str(tiny_checkpoint), shard_size=5, device="cpu")
    rows = {r["key"]: r for r in read_output_rows(f"{root}/out")}
    assert set(rows) == set(corpus)  # every source accounted for, once
    failed = {k for k, (_, outcome) in corpus.items() if outcome == "failed"}
    assert {k for k, r in rows.items() if r["status"] == "failed"} == failed
    assert all(rows[k]["error"] for k in failed)
    assert summary.failed == len(failed)
    # Real colour photos are left alone (skipped); gray, sepia and alpha ones are colorized.
    assert rows["cmyk.jpg"]["status"] == "skipped" and rows["gray16.png"]["status"] == "ok"
    assert rows["animated.gif"]["status"] == "skipped"  # its first frame is a colour photo
    assert rows["sepia.jpg"]["status"] == "ok" and rows["sepia.jpg"]["output_key"] == "sepia.jpg"


def test_shard_task_retries_injected_storage_errors(tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from colorize_core.storage import local as storage

    keys = gray_archive(str(tmp_path / "gray"), 3)
    original = storage.LocalStore.read
    failures = {"left": 2}

    def flaky_read(self: storage.LocalStore, key: str) -> bytes:
        if key.endswith(".png") and failures["left"] > 0:
            failures["left"] -= 1
            raise StorageError("simulated 503 SlowDown", transient=True)
        return original(self, key)

    monkeypatch.setattr(storage.LocalStore, "read", flaky_read)
    summary = colorize_archive(str(tmp_path / "gray"), str(tmp_path / "out"), checkpoint=str(tiny_checkpoint), shard_size=10, device="cpu")
    assert failures["left"] == 0 and summary.ok == 3 and summary.failed == 0
    assert sorted(r["key"] for r in read_output_rows(str(tmp_path / "out"))) == sorted(keys)


def test_training_is_retried_for_transient_errors_only_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from colorize_core.storage.objects import StorageError
    from flows import train_model as tm

    task = tm.train_task.with_options(retry_delay_seconds=0)
    checkpoint = str(tmp_path / "m.safetensors")
    cfg = tm.make_train_config(str(tmp_path), checkpoint)
    for error, attempts in ((ValueError("no colour photos to learn from"), 1), (StorageError("connection reset", transient=True), 1 + tm.RETRIES)):
        resumed: list[bool] = []

        def failing(cfg: Any, **kwargs: Any) -> None:
            resumed.append(cfg.resume)
            raise error

        monkeypatch.setattr(tm, "train", failing)
        with pytest.raises(type(error)):
            task(cfg, checkpoint)
        assert resumed == [False] + [True] * (attempts - 1)  # a retry resumes from the last checkpoint


def test_corrupt_image_is_not_retried(tmp_path: Path, tiny_checkpoint: Path) -> None:
    from colorize_core.storage.errors import is_transient

    assert not is_transient(ValueError("corrupt")) and is_transient(StorageError("503", transient=True))
    (tmp_path / "gray").mkdir()
    (tmp_path / "gray" / "bad.jpg").write_bytes(b"\xff\xd8\xff nope")
    summary = colorize_archive(str(tmp_path / "gray"), str(tmp_path / "out"), checkpoint=str(tiny_checkpoint), device="cpu")
    assert summary.failed == 1 and summary.ok == 0


def test_missing_latest_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no model registered"):
        colorize_archive(str(tmp_path), str(tmp_path / "out"), checkpoint="latest", registry=str(tmp_path / "reg"))


def test_gpu_concurrency_limit_is_created_once() -> None:
    from prefect.client.orchestration import get_client

    from flows.colorize_archive import GPU_LIMIT, ensure_gpu_limit

    assert ensure_gpu_limit(slots=2) == 2
    assert ensure_gpu_limit(slots=5) == 2  # an existing limit is left as the operator set it
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(GPU_LIMIT).limit == 2


def test_a_long_history_is_compacted_before_planning(tmp_path: Path, tiny_checkpoint: Path) -> None:
    from colorize_core.archive.layout import META_PREFIX, metadata_key

    gray, out = str(tmp_path / "gray"), str(tmp_path / "out")
    keys = gray_archive(gray, 3)
    colorize_archive(gray, out, checkpoint=str(tiny_checkpoint), device="cpu")
    store = open_store(out)
    # Age that run's metadata file by a year, and give it 63 old neighbours (other archives' rows).
    (real,) = [o.key for o in store.list(META_PREFIX)]
    store.write(metadata_key("20251101T020000-00000000", 0), store.read(real))
    store.delete(real)
    filler = store.read(metadata_key("20251101T020000-00000000", 0))
    for night in range(63):
        store.write(metadata_key(f"202512{1 + night % 28:02d}T02{night % 60:02d}00-ffffffff", 0), filler)
    store.write("_colorize/plans/20251101T020000-00000000.parquet", b"a year-old run's plan")
    new = gray_archive(gray, 1, start=50)
    summary = colorize_archive(gray, out, checkpoint=str(tiny_checkpoint), device="cpu")
    assert not store.exists("_colorize/plans/20251101T020000-00000000.parquet")  # finished runs' plans pruned
    assert len(list(store.list("_colorize/plans/"))) == 2  # the two recent runs' plans stay
    assert (summary.ok, summary.already_done) == (1, 3)  # the folded history still counts
    files = [o.key for o in store.list(META_PREFIX)]
    assert len(files) == 2 and sum("compacted-" in k for k in files) == 1
    assert sorted(r["key"] for r in read_output_rows(out)) == sorted(keys + new)  # filler rows share run ids: once each


def test_each_shard_task_reads_its_own_shard_of_the_plan(tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from colorize_core.archive import listing

    gray, out = str(tmp_path / "gray"), str(tmp_path / "out")
    keys = gray_archive(gray, 5)
    read: list[tuple[int, int]] = []
    real = listing.read_manifest_shard

    def recording(uri: str, index: int):  # type: ignore[no-untyped-def]
        source, items = real(uri, index)
        read.append((index, len(items)))
        return source, items

    monkeypatch.setattr("flows.colorize_archive.read_manifest_shard", recording)
    summary = colorize_archive(gray, out, checkpoint=str(tiny_checkpoint), shard_size=2, device="cpu")
    assert summary.ok == 5 and sorted(read) == [(0, 2), (1, 2), (2, 1)]
    (plan,) = [o.key for o in open_store(out).list("_colorize/plans/")]  # one plan file for the run
    assert sorted(o.key for o in listing.read_manifest(f"{out}/{plan}").objects) == sorted(keys)
