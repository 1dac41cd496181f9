"""Known failures: a source that failed for a permanent reason (bad data, a key that cannot be
stored safely) is not retried by the next run while its file is unchanged, so a nightly job's
exit status says what is new; `--retry-failed` retries them, a changed file is retried at once,
and transient failures are always retried."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pytest
from PIL import Image, ImageFile

from colorize_core.archive.failures import current_judge
from colorize_core.archive.history import read_output_rows
from colorize_core.archive.layout import RUN_TIME_FORMAT, metadata_key
from colorize_core.archive.listing import ListedObject
from colorize_core.archive.shards import plan_archive
from colorize_core.archive.steps import Colorized, Ended, Facts, load, make_row, write_output
from colorize_core.archive.summary import summarize
from colorize_core.storage import deep
from colorize_core.storage.imageio import ImageDecodeError, decode
from colorize_core.storage.objects import ObjectInfo
from colorize_core.storage.records import OUTPUT_SCHEMA, rows_to_table, table_to_bytes
from colorize_core.storage.stores import open_store
from tests.badfiles import bad_corpus
from tests.conftest import png_bytes

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
TRUNCATED = "corrupt or truncated image data: image file is truncated"
NOT_AN_IMAGE = "not an image, or a format this tool cannot read"


def _png(value: int = 120, size: tuple[int, int] = (24, 16)) -> bytes:
    return png_bytes(Image.new("L", size, value))


def test_the_reasons_of_real_bad_files_are_permanent_and_a_vanished_source_is_not(tmp_path: Path) -> None:
    reasons = []
    for key, (data, outcome) in bad_corpus().items():
        if outcome == "failed":
            with pytest.raises(ImageDecodeError) as exc:
                decode(data, name=key)
            assert exc.value.permanent, exc.value.reason
            reasons.append(exc.value.reason)
    assert len(reasons) >= 4, reasons
    obj = ObjectInfo("a/b.jpg", 1, "e")
    row = make_row(obj, "m", "r", status="failed", error=reasons[0], permanent=True)
    assert row["permanent"] is True and row["judged_by"] == current_judge()
    unsafe = load(open_store(str(tmp_path)), ListedObject("a\tb.jpg", 1, "e", "key has a tab"), "m", "r", skip_colour=True, device_jpeg=False)
    assert isinstance(unsafe, Ended) and unsafe.row["permanent"] is True  # the name's fault
    vanished = load(open_store(str(tmp_path)), ListedObject("gone.jpg", 1, "e"), "m", "r", skip_colour=True, device_jpeg=False)
    assert isinstance(vanished, Ended) and vanished.row["error"] == "object vanished since listing" and vanished.row["permanent"] is False
    assert make_row(obj, "m", "r", status="failed", error="something nobody classified")["permanent"] is False
    assert make_row(obj, "m", "r", status="ok")["permanent"] is None


@pytest.mark.parametrize(
    ("raised", "reason"),
    [(MemoryError(), "not enough memory to decode it"), (RuntimeError("a bug"), "could not be decoded (RuntimeError: a bug)")],
)
def test_memory_and_unexpected_errors_while_decoding_are_not_the_files_fault(
    monkeypatch: pytest.MonkeyPatch, raised: Exception, reason: str
) -> None:
    def load(self: object) -> None:
        raise raised

    bmp = io.BytesIO()
    Image.new("L", (24, 16)).save(bmp, format="BMP")  # a BMP: reading its EXIF loads no pixels
    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    with pytest.raises(ImageDecodeError) as exc:
        decode(bmp.getvalue(), name="big.bmp")
    assert (exc.value.reason, exc.value.permanent) == (reason, False)
    row = make_row(ObjectInfo("big.png", 1, "e"), "m", "r", status="failed", error=exc.value.reason, permanent=exc.value.permanent)
    assert row["permanent"] is False  # retried by every run


def test_an_error_of_our_own_16_bit_reader_is_not_called_corrupt_data(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise TypeError("a bug in the reader")

    monkeypatch.setattr(deep, "rgb16_pixels", broken)
    with pytest.raises(TypeError, match="a bug in the reader"):
        decode(_png(), name="fine.png")


def test_a_file_where_a_destination_folder_should_be_is_not_a_known_failure(tmp_path: Path) -> None:
    out = open_store(tmp_path / "out")
    out.write("a", b"a file, not a folder")
    facts = Facts(ObjectInfo("a/b.png", 1, "e"))
    img = Image.new("RGB", (8, 8))
    row = write_output(out, Colorized(facts, "a/b.png", img, {}), "m", "r", label=False)
    assert (row["status"], row["permanent"]) == ("failed", False) and row["error"].startswith("cannot be stored")
    row = write_output(out, Colorized(facts, "x" * 300 + ".png", img, {}), "m", "r", label=False)  # the name's own fault
    assert (row["status"], row["permanent"]) == ("failed", True)


def _run_id(minutes_ago: float) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).strftime(RUN_TIME_FORMAT) + "-abcd1234"


def _commit(dest: str, run_id: str, rows: list[dict], schema: pa.Schema = OUTPUT_SCHEMA) -> None:
    full = [{name: None for name in OUTPUT_SCHEMA.names} | {"run_id": run_id, "error": ""} | r for r in rows]
    table = rows_to_table(full, OUTPUT_SCHEMA).select(schema.names)
    open_store(dest).write(metadata_key(run_id, 0), table_to_bytes(table))


@pytest.fixture()
def archive(tmp_path: Path) -> tuple[str, str, dict[str, str]]:
    """A source of six photos and a history in which each met a different fate; etags by key."""
    src, dest = str(tmp_path / "src"), str(tmp_path / "dest")
    store = open_store(src)
    for key in ("bad.jpg", "text.jpg", "vanished.png", "repaired.png", "new-model.png", "upgraded.jpg"):
        store.write(key, _png())
    etag = {o.key: o.etag for o in store.list()}

    def row(key: str, minutes_ago: float, **values: object) -> dict:
        return {"key": key, "source_etag": etag[key], "model_id": "m1", "processed_at": NOW - timedelta(minutes=minutes_ago), **values}

    judged = {"permanent": True, "judged_by": current_judge()}
    _commit(dest, _run_id(60), [
        row("bad.jpg", 60, status="failed", error=TRUNCATED, **judged),
        row("vanished.png", 60, status="failed", error="object vanished since listing", permanent=False, judged_by=current_judge()),
        row("repaired.png", 60, status="failed", error=TRUNCATED, **judged),
        row("new-model.png", 60, status="failed", error=TRUNCATED, **judged),
        # Judged by an older tool (a codec upgrade may read it now): retried.
        row("upgraded.jpg", 60, status="failed", error=NOT_AN_IMAGE, permanent=True, judged_by="colorize 0.0.1; Pillow 9.0.0"),
    ])  # fmt: skip
    # A file from before the `permanent` and `judged_by` columns: judged by an older tool, retried.
    old_schema = pa.schema([f for f in OUTPUT_SCHEMA if f.name not in ("permanent", "judged_by")])
    _commit(dest, _run_id(50), [row("text.jpg", 50, status="failed", error=NOT_AN_IMAGE)], old_schema)
    # A later run colorized it (say, with --retry-failed and a better decoder): its latest row is ok.
    _commit(dest, _run_id(40), [row("new-model.png", 40, status="ok", output_key="new-model.png")])
    return src, dest, etag


def test_known_failures_are_left_alone_and_the_rest_retried(archive: tuple[str, str, dict[str, str]]) -> None:
    src, dest, _ = archive
    plan = plan_archive(src, dest, "m1", shard_size=10)
    todo = sorted(plan.todo["key"].to_pylist())
    # bad.jpg: a known failure; repaired.png too (its file has not changed yet); vanished.png: a
    # transient failure, retried; text.jpg and upgraded.jpg: judged by an older tool, retried;
    # new-model.png: done already with m1.
    assert todo == ["text.jpg", "upgraded.jpg", "vanished.png"] and plan.known_failed == 2 and plan.already_done == 1
    # A new model redoes what the old one colorized, but not what no model can read.
    plan = plan_archive(src, dest, "m2", shard_size=10)
    assert sorted(plan.todo["key"].to_pylist()) == ["new-model.png", "text.jpg", "upgraded.jpg", "vanished.png"] and plan.known_failed == 2


def test_a_changed_file_is_retried_at_once_and_retry_failed_retries_all(archive: tuple[str, str, dict[str, str]]) -> None:
    src, dest, etag = archive
    # A new size: a new etag whatever the file system's mtime granularity.
    open_store(src).write("repaired.png", _png(200, size=(48, 32)))
    assert {o.key: o.etag for o in open_store(src).list()}["repaired.png"] != etag["repaired.png"]
    plan = plan_archive(src, dest, "m1", shard_size=10)
    assert sorted(plan.todo["key"].to_pylist()) == ["repaired.png", "text.jpg", "upgraded.jpg", "vanished.png"] and plan.known_failed == 1
    plan = plan_archive(src, dest, "m1", shard_size=10, retry_failed=True)
    assert sorted(plan.todo["key"].to_pylist()) == ["bad.jpg", "repaired.png", "text.jpg", "upgraded.jpg", "vanished.png"] and plan.known_failed == 0


def test_status_lists_known_failures_with_their_reasons(archive: tuple[str, str, dict[str, str]]) -> None:
    _, dest, _ = archive
    summary = summarize(dest)
    assert [k for k, _ in summary.failing] == ["bad.jpg", "repaired.png", "text.jpg", "upgraded.jpg", "vanished.png"]
    assert summary.known_failures == [("bad.jpg", TRUNCATED), ("repaired.png", TRUNCATED)]
    assert {r["key"]: r["judged_by"] for r in read_output_rows(dest) if r["status"] == "failed"}["text.jpg"] is None  # old file: read as null


@pytest.mark.usefixtures("prefect_harness")
def test_the_second_night_with_nothing_new_exits_0(tmp_path: Path, photo_dir: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from flows.cli import main
    from flows.colorize_archive import colorize_archive

    src, out = tmp_path / "bw", tmp_path / "out"
    src.mkdir()
    for p in sorted(photo_dir.iterdir())[:2]:
        Image.open(p).convert("L").save(src / p.name)
    jpeg = io.BytesIO()
    Image.open(next(photo_dir.iterdir())).convert("L").save(jpeg, format="JPEG")
    (src / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    (src / "text.jpg").write_bytes(b"this is a text file, not a photograph\n" * 20)
    args = ["archive", str(src), "--dest", str(out), "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--workers", "1"]

    assert main(args) == 2  # the first night: two new failures
    capsys.readouterr()
    assert main(args) == 0  # the second night: nothing new failed
    err = capsys.readouterr().err
    assert f"2 known failures not retried; see `colorize status {out}`" in err
    assert main(["status", str(out)]) == 2  # still failing: a monitor's signal
    text = capsys.readouterr().out
    assert "known failures (2)" in text and "text.jpg: not an image" in text and "truncated.jpg: unreadable header" in text
    assert main(["status", str(out), "--json"]) == 2
    assert [k for k, _ in json.loads(capsys.readouterr().out)["known_failures"]] == ["text.jpg", "truncated.jpg"]

    assert main([*args, "--retry-failed"]) == 2  # retried on request, and they fail again
    assert sum(r["key"] == "text.jpg" for r in read_output_rows(str(out))) == 2
    capsys.readouterr()
    (src / "truncated.jpg").write_bytes(jpeg.getvalue())  # repaired: a new etag, retried at once
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "1 known failure not retried" in captured.err
    summary = colorize_archive(str(src), str(out), checkpoint=str(tiny_checkpoint), device="cpu")
    assert (summary.ok, summary.failed, summary.known_failed, summary.already_done) == (0, 0, 1, 3)
