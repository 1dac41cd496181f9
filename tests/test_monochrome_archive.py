"""Toned and aged prints through the archive and dataset building: the archive colorizes them
(keeping their gray levels) and skips real colour photos with the decision's figures in the row;
dataset building does the opposite; `--colour-photos colorize` colorizes everything."""

from __future__ import annotations

import io
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from PIL import Image

from bench.aged_prints import age_print, luma
from colorize_core.archive.history import read_output_rows
from colorize_core.archive.shards import colorize_shard, plan_archive
from colorize_core.data.build import build_dataset
from colorize_core.archive.listing import list_images
from colorize_core.model.checkpoint import read_model_id
from colorize_core.model.infer import Colorizer
from colorize_core.monochrome import decision_id, net
from colorize_core.storage.stores import open_store
from flows.cli import build_parser, main
from tests.test_monochrome import gray_scene, muted_colour_scene

# Each test colorizes or builds from a small archive (~15 s together): `make test`, not test-fast,
# whose unit-level twin is tests/test_monochrome.py.
pytestmark = pytest.mark.slow

PRINTS = {  # key -> (tone, marks, format)
    "prints/sepia stained.png": ("sepia", ("yellowing", "stain", "foxing"), "PNG"),
    "prints/cyanotype.png": ("cyanotype", ("vignette", "scanner-noise"), "PNG"),
    "prints/postcard 1909.jpg": ("pink-postcard", ("fade", "hand-tint"), "JPEG"),
    "prints/wedding 1946.jpg": ("warm", ("margin", "yellowing", "scanner-noise"), "JPEG"),
}
COLOUR = ("colour/desert.jpg", "colour/harbour.png")


def _bytes(rgb: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return buf.getvalue()


@pytest.fixture()
def toned_archive(tmp_path: Path) -> str:
    rng = np.random.default_rng(2026)
    store = open_store(str(tmp_path / "src"))
    for key, (tone, marks, fmt) in PRINTS.items():
        print_ = age_print(muted_colour_scene(rng, rng.uniform(0, 360)), rng, tone=tone, marks=marks, jpeg=False)
        store.write(key, _bytes(print_.rgb, fmt))
    store.write("gray/scan.png", _bytes(gray_scene(rng), "PNG"))
    store.write(COLOUR[0], _bytes(muted_colour_scene(rng, 150.0), "JPEG"))
    store.write(COLOUR[1], _bytes(muted_colour_scene(rng, 220.0), "PNG"))
    return str(tmp_path / "src")


def _shard(src: str, dest: str, checkpoint: Path, *, skip_colour: bool) -> dict[str, dict]:
    colorizer = Colorizer.from_checkpoint(checkpoint, device="cpu", batch_size=4)
    colorize_shard(src, dest, list_images(open_store(src)), colorizer, run_id="r", shard=0, skip_colour=skip_colour)
    return {r["key"]: r for r in read_output_rows(dest)}


def test_the_archive_colorizes_toned_prints_and_skips_colour_photos(toned_archive: str, tmp_path: Path, tiny_checkpoint: Path) -> None:
    rows = _shard(toned_archive, str(tmp_path / "out"), tiny_checkpoint, skip_colour=True)
    assert {k: r["status"] for k, r in rows.items()} == {**{k: "ok" for k in PRINTS}, "gray/scan.png": "ok", **{k: "skipped" for k in COLOUR}}
    for key in COLOUR:  # the operator sees why: the figures are in the row and in its reason
        assert rows[key]["error"].startswith("already a colour photo (colour: black-and-white score")
        assert rows[key]["bw_score"] < net.load().threshold and rows[key]["mean_chroma"] > 0.01
        assert rows[key]["judged_by"] == decision_id()
    for key in PRINTS:
        assert rows[key]["mean_chroma"] > 0.004  # toned, not gray: the print's colour was measured
        assert rows[key]["unexplained_colour"] is not None and rows[key]["bw_score"] >= net.load().threshold
    assert rows["gray/scan.png"]["mean_chroma"] < 1e-6  # an RGB file with three equal channels
    assert rows["gray/scan.png"]["bw_score"] is None  # gray: the network is not asked


def test_a_toned_print_keeps_its_gray_levels(toned_archive: str, tmp_path: Path, tiny_checkpoint: Path) -> None:
    rows = _shard(toned_archive, str(tmp_path / "out"), tiny_checkpoint, skip_colour=True)
    for key in ("prints/sepia stained.png", "prints/cyanotype.png"):
        source = np.asarray(Image.open(Path(toned_archive) / key).convert("RGB"))
        output = np.asarray(Image.open(tmp_path / "out" / rows[key]["output_key"]).convert("RGB"))
        # colorized from its luma like any other print: new chroma, the same brightness
        assert np.abs(luma(output) - luma(source)).max() <= 1.5 / 255
        assert np.abs(output.astype(int) - source.astype(int)).max() > 3  # and its colour is new


def test_a_colour_photo_is_judged_once_until_it_or_the_decision_changes(toned_archive: str, tmp_path: Path, tiny_checkpoint: Path) -> None:
    dest = str(tmp_path / "out")
    model_id = read_model_id(tiny_checkpoint)
    _shard(toned_archive, dest, tiny_checkpoint, skip_colour=True)
    every = len(PRINTS) + 1 + len(COLOUR)
    again = plan_archive(toned_archive, dest, model_id, 10)  # the next night: nothing to read again
    assert again.todo.num_rows == 0 and again.already_done == every
    everything = plan_archive(toned_archive, dest, model_id, 10, skip_colour=False)  # --colorize-all
    assert sorted(everything.todo["key"].to_pylist()) == sorted(COLOUR)
    with mock.patch("colorize_core.archive.shards.decision_id", return_value="bw-net retrained"):
        assert sorted(plan_archive(toned_archive, dest, model_id, 10).todo["key"].to_pylist()) == sorted(COLOUR)
    rgb = np.asarray(Image.open(Path(toned_archive) / COLOUR[1]))
    open_store(toned_archive).write(COLOUR[1], _bytes(rgb[::-1].copy(), "PNG"))  # the file replaced
    assert plan_archive(toned_archive, dest, model_id, 10).todo["key"].to_pylist() == [COLOUR[1]]


def test_colour_photos_colorize_colorizes_everything(toned_archive: str, tmp_path: Path, tiny_checkpoint: Path) -> None:
    rows = _shard(toned_archive, str(tmp_path / "out"), tiny_checkpoint, skip_colour=False)
    assert {r["status"] for r in rows.values()} == {"ok"} and len(rows) == len(PRINTS) + 1 + len(COLOUR)
    assert all(r["mean_chroma"] is None for r in rows.values())  # not judged


def test_building_a_dataset_keeps_only_the_colour_photos(toned_archive: str, tmp_path: Path) -> None:
    summary = build_dataset(toned_archive, str(tmp_path / "dataset"), size=32, shard_size=4)
    assert summary.rows == len(COLOUR)
    assert summary.skipped == {"toned": len(PRINTS), "gray": 1}


def test_status_shows_the_skipped_as_colour_with_their_figures(toned_archive: str, tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _shard(toned_archive, str(tmp_path / "out"), tiny_checkpoint, skip_colour=True)
    assert main(["status", str(tmp_path / "out")]) == 0  # skipped is not failed
    out = capsys.readouterr().out
    assert "skipped as colour 2" in out and "skipped as colour (2): real colour photos" in out
    assert f"{COLOUR[0]}: already a colour photo (colour: black-and-white score" in out


def test_the_command_line_names_the_override() -> None:
    parse = build_parser().parse_args
    assert parse(["archive", "a", "--dest", "b"]).colour_photos == "skip"
    assert parse(["archive", "a", "--dest", "b", "--colorize-all"]).colour_photos == "colorize"
    assert parse(["archive", "a", "--dest", "b", "--colour-photos", "colorize"]).colour_photos == "colorize"
    with pytest.raises(SystemExit):
        parse(["archive", "a", "--dest", "b", "--colour-photos", "maybe"])


@pytest.mark.usefixtures("prefect_harness")
def test_the_flow_takes_the_override(toned_archive: str, tmp_path: Path, tiny_checkpoint: Path) -> None:
    from flows.colorize_archive import colorize_archive

    skipping = colorize_archive(toned_archive, str(tmp_path / "a"), checkpoint=str(tiny_checkpoint), device="cpu")
    assert skipping.skipped == len(COLOUR) and skipping.ok == len(PRINTS) + 1
    everything = colorize_archive(toned_archive, str(tmp_path / "b"), checkpoint=str(tiny_checkpoint), device="cpu", colour_photos="colorize")
    assert everything.skipped == 0 and everything.ok == len(PRINTS) + 1 + len(COLOUR)
    with pytest.raises(ValueError, match="colour_photos must be one of skip, colorize"):
        colorize_archive(toned_archive, str(tmp_path / "c"), checkpoint=str(tiny_checkpoint), device="cpu", colour_photos="maybe")
