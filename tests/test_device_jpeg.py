"""The device-JPEG path (decode, colorize and encode on the model's device) against the Pillow
path. On CPU it runs libjpeg-turbo through the same code nvJPEG runs on CUDA (tests/test_gpu.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, JpegImagePlugin

from colorize_core.archive import steps as shard_steps
from colorize_core.archive.history import read_output_rows
from colorize_core.archive.listing import list_images
from colorize_core.archive.shards import colorize_shard
from colorize_core.archive.steps import Facts, Jpeg, pixel_groups
from colorize_core.model.infer import Colorizer
from colorize_core.model.metrics import colourfulness, colourfulness_tensor
from colorize_core.storage import jpeg_codec
from colorize_core.storage.imageio import decode
from colorize_core.storage.jpeg_codec import decode_jpegs, encode_jpegs, orient, probe_jpeg
from colorize_core.storage.objects import ObjectInfo
from colorize_core.storage.stores import open_store
from tests.badfiles import bad_corpus
from tests.conftest import bogus_huffman, jpeg_bytes, luma_of, make_photo

CPU = torch.device("cpu")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_matches_pillow_exif_transpose(orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = jpeg_bytes(make_photo(np.random.default_rng(orientation), 24, 40), exif=exif)
    header = probe_jpeg(data)
    assert header is not None and header.orientation == orientation
    (pixels,) = decode_jpegs([data], gray=False, device=CPU)
    ours = orient(pixels, header.orientation).permute(1, 2, 0).numpy()  # type: ignore[union-attr]
    assert np.array_equal(ours, np.asarray(decode(data).convert("RGB")))


def test_probe_takes_plain_jpegs_only() -> None:
    photo = make_photo(np.random.default_rng(0), 30, 50)
    assert probe_jpeg(jpeg_bytes(photo)) == jpeg_codec.JpegHeader(50, 30, gray=False, orientation=1)
    assert probe_jpeg(jpeg_bytes(photo.convert("L"))) == jpeg_codec.JpegHeader(50, 30, gray=True, orientation=1)
    assert probe_jpeg(jpeg_bytes(photo) + b"trailing bytes after the end marker") is not None
    assert probe_jpeg(jpeg_bytes(photo), max_pixels=1000) is None  # over the limit: Pillow says why
    refused = ["truncated.jpg", "zero.jpg", "text.jpg", "bomb.png", "cmyk.jpg", "rgba.png", "animated.gif"]
    corpus = bad_corpus()
    assert [k for k in refused if probe_jpeg(corpus[k][0]) is not None] == []


def test_a_bad_file_in_a_device_batch_comes_back_as_none_alone() -> None:
    rng = np.random.default_rng(1)
    good = [jpeg_bytes(make_photo(rng, 20, 30).convert("L")) for _ in range(3)]
    batch = [good[0], bogus_huffman(good[1]), good[2]]
    assert probe_jpeg(batch[1]) is not None  # the header alone looks fine
    out = decode_jpegs(batch, gray=True, device=CPU)
    assert out[1] is None and out[0] is not None and out[2] is not None
    assert np.array_equal(out[0][0].numpy(), np.asarray(decode(good[0])))  # type: ignore[index]


def test_encoded_jpegs_decode_to_what_was_encoded() -> None:
    photo = make_photo(np.random.default_rng(2), 64, 48)
    rgb = torch.from_numpy(np.array(photo)).permute(2, 0, 1).contiguous()
    (data,) = encode_jpegs([rgb], quality=95)
    back = decode(data)
    assert data.startswith(b"\xff\xd8\xff") and back.size == (48, 64)
    # As faithful as Pillow's own JPEG at the same quality and 4:2:0 chroma.
    truth = np.asarray(photo.convert("L"), dtype=np.float64)
    pillow = jpeg_bytes(photo, quality=95, subsampling=2)
    assert np.abs(luma_of(data) - truth).mean() <= np.abs(luma_of(pillow) - truth).mean() + 0.25


def test_colourfulness_on_a_tensor_equals_the_array_version() -> None:
    arr = np.array(make_photo(np.random.default_rng(3), 33, 47))
    assert colourfulness_tensor(torch.from_numpy(arr).permute(2, 0, 1)) == pytest.approx(colourfulness(arr), abs=1e-9)
    assert colourfulness_tensor(torch.full((3, 5, 5), 77, dtype=torch.uint8)) == 0.0


def test_pixel_groups_split_big_batches_and_keep_order() -> None:
    def item(w: int, h: int, i: int) -> Jpeg:
        return Jpeg(Facts(ObjectInfo(f"k{i}", 0, "e")), b"", jpeg_codec.JpegHeader(w, h, True, 1))

    items = [item(100, 100, i) for i in range(5)] + [item(1000, 1000, 5), item(10, 10, 6)]
    groups = pixel_groups(items, budget=25_000)
    assert [[s.facts.obj.key for s in g] for g in groups] == [["k0", "k1"], ["k2", "k3"], ["k4"], ["k5"], ["k6"]]


def _rows(uri: str) -> dict[str, dict]:
    return {r["key"]: r for r in read_output_rows(uri)}


def test_device_jpeg_shard_gives_the_pillow_paths_rows(jpeg_archive: str, tmp_path: Path, tiny_checkpoint: Path) -> None:
    colorizer = Colorizer.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=4)
    items = list_images(open_store(jpeg_archive))
    pil = colorize_shard(jpeg_archive, str(tmp_path / "pil"), items, colorizer, run_id="r", shard=0, device_jpeg=False)
    dev = colorize_shard(jpeg_archive, str(tmp_path / "dev"), items, colorizer, run_id="r", shard=0, device_jpeg=True)
    assert pil.counts == dev.counts
    rows_pil, rows_dev = _rows(str(tmp_path / "pil")), _rows(str(tmp_path / "dev"))
    assert list(rows_dev) == [o.key for o in items]
    for key, a in rows_pil.items():
        b = rows_dev[key]
        assert (b["status"], b["error"], b["output_key"], b["width"], b["height"]) == (a["status"], a["error"], a["output_key"], a["width"], a["height"]), key
        if a["status"] != "ok":
            continue
        assert b["colourfulness"] == pytest.approx(a["colourfulness"], abs=1.5), key
        assert all(b[t] is not None and b[t] > 0 for t in ("read_s", "decode_s", "infer_s", "encode_s")), key  # each stage timed
        src = luma_of(open_store(jpeg_archive).read(key))
        out_pil = luma_of((tmp_path / "pil" / a["output_key"]).read_bytes())
        out_dev = luma_of((tmp_path / "dev" / b["output_key"]).read_bytes())
        assert out_dev.shape == src.shape, key  # EXIF orientation applied the same way
        assert np.abs(out_dev - src).mean() < 1.5, key  # the source's luma survives
        assert np.abs(out_dev - out_pil).mean() < 1.5, key
    def sampling(path: Path) -> int:
        return JpegImagePlugin.get_sampling(Image.open(path))

    # The device path did the work: its encoder writes 4:2:0, Pillow's path 4:4:4.
    assert [sampling(tmp_path / d / "gray/a.jpg") for d in ("dev", "pil")] == [2, 0]
    assert rows_dev["colour/photo.jpg"]["status"] == "skipped"
    assert rows_dev["gray/f bogus huffman.jpg"]["status"] == "failed"  # the device refused; Pillow said why
    assert rows_dev["gray/e jpeg named.png"]["output_key"] == "gray/e jpeg named.png"
    assert (tmp_path / "dev" / "gray/e jpeg named.png").read_bytes().startswith(b"\x89PNG")


def test_device_encoder_failure_falls_back_to_pillow(jpeg_archive: str, tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(images: list[torch.Tensor], quality: int = 95) -> list[bytes]:
        raise RuntimeError("simulated nvJPEG encoder failure")

    monkeypatch.setattr(shard_steps, "encode_jpegs", refuse)
    colorizer = Colorizer.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=4)
    items = [o for o in list_images(open_store(jpeg_archive)) if o.key.startswith("gray/")]
    outcome = colorize_shard(jpeg_archive, str(tmp_path / "out"), items, colorizer, run_id="r", shard=0, device_jpeg=True)
    assert outcome.counts == {"ok": 5, "failed": 1}
    for r in read_output_rows(str(tmp_path / "out")):
        if r["status"] == "ok":
            assert luma_of((tmp_path / "out" / r["output_key"]).read_bytes()).shape == (r["height"], r["width"])


def test_without_torchvision_codecs_everything_goes_through_pillow(jpeg_archive: str, tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def gone() -> None:
        raise AttributeError("module 'torchvision.io' has no attribute 'decode_jpeg'")  # a future torchvision

    monkeypatch.setattr(jpeg_codec, "_torchvision_io", gone)
    colorizer = Colorizer.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=4)
    items = [o for o in list_images(open_store(jpeg_archive)) if o.key.startswith(("gray/", "colour/"))]
    outcome = colorize_shard(jpeg_archive, str(tmp_path / "out"), items, colorizer, run_id="r", shard=0, device_jpeg=True)
    assert outcome.counts == {"ok": 5, "failed": 1, "skipped": 1}
    assert JpegImagePlugin.get_sampling(Image.open(tmp_path / "out" / "gray/a.jpg")) == 0  # Pillow's 4:4:4 encoder wrote it


def test_an_item_no_stage_takes_is_a_bug_named_not_a_lost_photo(tiny_checkpoint: Path) -> None:
    """Every source ends in a row: an item left over by the stages (here a JPEG for the device
    decoder with only the Pillow stage) stops the shard with its key, never passes silently."""
    from colorize_core.archive.steps import Ended, WithPillow, run_stages

    colorizer = Colorizer.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=4)
    ended = Ended({"key": "bad.png"})
    jpeg = Jpeg(Facts(ObjectInfo("k.jpg", 0, "e")), b"", jpeg_codec.JpegHeader(8, 8, True, 1))
    out = run_stages((WithPillow(colorizer),), [ended, jpeg])
    assert next(out) is ended  # handed on as it comes
    with pytest.raises(TypeError, match="no stage took a Jpeg .k.jpg."):
        next(out)
