"""16-bit in, 16-bit out: a 16-bit TIFF or PNG source (gray I;16, I;16B, I; RGB(A) TIFF or PNG
at 16 bits a sample, deflated, LZW-compressed or interlaced) colorizes to a 16-bit RGB(A) output of the same format family, its luma the
source's within one level of 65,535, labelled like every other output; 8-bit sources are left
exactly as they were. Outputs are read back with tifffile, pypng (16-bit PNG), Pillow and exiftool."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import numpy as np
import png
import pytest
import tifffile
from PIL import Image

from colorize_core.archive.history import read_output_rows
from colorize_core.archive.shards import colorize_shard
from colorize_core.archive.listing import list_images
from colorize_core.local_files import colorize_files, expand_inputs
from colorize_core.model.infer import PLAIN, Colorizer
from colorize_core.storage import deep
from colorize_core.storage import provenance as prov
from colorize_core.storage.deep import RGB16_INFO, Image16
from colorize_core.storage.imageio import decode, encode, output_format_for
from colorize_core.storage.provenance import Provenance
from colorize_core.storage.stores import open_store
from tests.test_provenance import EXIFTOOL, check_exif, check_label, needs_exiftool, source_exif

BT601 = np.array([0.299, 0.587, 0.114])
H, W = 37, 53  # odd on purpose


def gradient() -> np.ndarray:
    """uint16 (H, W) covering the whole range, almost no value a multiple of 257 (an 8-bit
    level scaled up): a source whose low byte matters."""
    return ((np.arange(H)[:, None] * 1201 + np.arange(W)[None, :] * 977 + 13) % 65536).astype(np.uint16)


def rgb16(alpha: bool = False) -> np.ndarray:
    g = gradient()
    planes = [g, g[::-1], g[:, ::-1]] + ([(g // 3 + 7).astype(np.uint16)] if alpha else [])
    return np.stack(planes, axis=-1)


def _pillow_bytes(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "TIFF":
        img.save(buf, format="TIFF", tiffinfo=dict(source_exif()))  # EXIF as a scanner writes it
    else:
        img.save(buf, format="PNG", exif=source_exif())
    return buf.getvalue()


def _tifffile_bytes(arr: np.ndarray, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, metadata=None, **kwargs)  # type: ignore[arg-type]
    return buf.getvalue()


def _png16_bytes(arr: np.ndarray, *, interlace: bool = False) -> bytes:
    """A 16-bit RGB(A) PNG by pypng (a writer independent of ours and of the reader)."""
    h, w, c = arr.shape
    buf = io.BytesIO()
    png.Writer(w, h, bitdepth=16, greyscale=False, alpha=c == 4, interlace=interlace).write(buf, arr.reshape(h, w * c).tolist())
    return buf.getvalue()


def _with_exif_orientation(png_data: bytes, orientation: int) -> bytes:
    """The PNG with an eXIf chunk (orientation only) right after IHDR."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    ihdr_end = 8 + 4 + 4 + 13 + 4
    return png_data[:ihdr_end] + deep._png_chunk(b"eXIf", exif.tobytes()) + png_data[ihdr_end:]


# name -> (source bytes, its luma as float64 (H, W), its alpha or None, whether it carries source_exif())
def sources() -> dict[str, tuple[bytes, np.ndarray, np.ndarray | None, bool]]:
    g = gradient()
    i16 = Image.fromarray(g)
    assert i16.mode == "I;16"
    rgb, rgba = rgb16(), rgb16(alpha=True)
    return {
        "gray-I16.tif": (_pillow_bytes(i16, "TIFF"), g.astype(np.float64), None, True),
        "gray-I16B.tif": (_tifffile_bytes(g, byteorder=">"), g.astype(np.float64), None, False),
        "gray-I.tif": (_tifffile_bytes(g.astype(np.int32)), g.astype(np.float64), None, False),
        "gray-I16.png": (_pillow_bytes(i16, "PNG"), g.astype(np.float64), None, True),
        "rgb16.tif": (_tifffile_bytes(rgb, photometric="rgb"), rgb @ BT601, None, False),
        "rgba16.tif": (_tifffile_bytes(rgba, photometric="rgb", extrasamples=["unassalpha"]), rgba[..., :3] @ BT601, rgba[..., 3], False),
        "rgb16-lzw.tif": (_tifffile_bytes(rgb, photometric="rgb", compression="lzw"), rgb @ BT601, None, False),
        "rgb16.png": (_png16_bytes(rgb), rgb @ BT601, None, False),
        "rgba16-adam7.png": (_png16_bytes(rgba, interlace=True), rgba[..., :3] @ BT601, rgba[..., 3], False),
    }


def test_sources_open_in_the_modes_they_stand_for() -> None:
    modes = {name: Image.open(io.BytesIO(data)).mode for name, (data, *_) in sources().items()}
    assert modes == {
        "gray-I16.tif": "I;16", "gray-I16B.tif": "I;16B", "gray-I.tif": "I", "gray-I16.png": "I;16",
        "rgb16.tif": "RGB", "rgba16.tif": "RGBA", "rgb16-lzw.tif": "RGB",  # Pillow's 8 bits: tifffile reads the 16
        "rgb16.png": "RGB", "rgba16-adam7.png": "RGBA",  # Pillow's 8 bits: imagecodecs reads the 16
    }  # fmt: skip


def read16(data: bytes, suffix: str) -> np.ndarray:
    """A 16-bit output's pixels (H, W, C) by a reader independent of the writer."""
    if suffix == ".tif":
        return tifffile.imread(io.BytesIO(data))
    width, height, rows, info = png.Reader(bytes=data).read()
    assert info["bitdepth"] == 16
    planes = info["planes"]
    return np.array([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(height, width, planes)


def check_output(data: bytes, suffix: str, luma: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    out = read16(data, suffix)
    assert out.dtype == np.uint16 and out.shape == (H, W, 3 if alpha is None else 4)
    y = out[..., :3].astype(np.float64) @ BT601
    assert np.abs(y - luma).max() <= 1.0  # within one level of 65,535
    assert (out[..., :3] % 257 != 0).mean() > 0.9  # real 16-bit levels, not 8-bit ones scaled up
    if alpha is not None:
        assert np.array_equal(out[..., 3], alpha)
    # Pillow reads the same file (at 8 bits: the high byte of each sample)
    img = Image.open(io.BytesIO(data))
    img.load()
    assert img.size == (W, H)
    if suffix == ".png":
        assert np.array_equal(np.asarray(img), (out >> 8).astype(np.uint8))
    return out


@pytest.fixture(scope="module")
def colorizer(tiny_checkpoint: Path) -> Colorizer:
    return Colorizer.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=4, options=PLAIN)  # fp32: no int8 conversion to wait for


@pytest.fixture()
def src_dir(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    (root / "box").mkdir(parents=True)
    for name, (data, *_) in sources().items():
        (root / "box" / name).write_bytes(data)
    return root


def test_images_gives_16bit_outputs_with_the_sources_luma(src_dir: Path, tmp_path: Path, colorizer: Colorizer) -> None:
    results = colorize_files(expand_inputs([src_dir]), tmp_path / "out", colorizer)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    for name, (_, luma, alpha, has_exif) in sources().items():
        path = tmp_path / "out" / "box" / name
        check_output(path.read_bytes(), path.suffix, luma, alpha)
        img = Image.open(path)
        check_label(img, key=f"box/{name}", model=colorizer.model_id)  # the project's reader: Pillow + XML
        if has_exif:
            check_exif(img)


@pytest.mark.parametrize("io_threads", [0, 2])
def test_the_archive_shard_path_gives_16bit_outputs(src_dir: Path, tmp_path: Path, colorizer: Colorizer, io_threads: int) -> None:
    items = list_images(open_store(str(src_dir)))
    dest = tmp_path / "dest"
    # skip_colour=False: the RGB sources are colour gradients, and only the output is tested here
    outcome = colorize_shard(str(src_dir), str(dest), items, colorizer, run_id="r", shard=0, io_threads=io_threads, skip_colour=False)
    assert outcome.counts == {"ok": len(sources())}, outcome.failures
    rows = {r["key"]: r for r in read_output_rows(str(dest))}
    for name, (_, luma, alpha, has_exif) in sources().items():
        row = rows[f"box/{name}"]
        assert (row["width"], row["height"]) == (W, H) and row["colourfulness"] >= 0.0
        data = (dest / row["output_key"]).read_bytes()
        out = check_output(data, Path(name).suffix, luma, alpha)
        img = Image.open(io.BytesIO(data))
        check_label(img, key=f"box/{name}", model=colorizer.model_id)
        if has_exif:
            check_exif(img)
        assert row["output_key"] == f"box/{name}" and out.shape[:2] == (H, W)


def test_the_shard_path_still_skips_a_16bit_colour_photo(src_dir: Path, tmp_path: Path, colorizer: Colorizer) -> None:
    """A colour 16-bit TIFF is measured on Pillow's 8-bit copy, as any colour photo is."""
    items = [o for o in list_images(open_store(str(src_dir))) if o.key == "box/rgb16.tif"]
    outcome = colorize_shard(str(src_dir), str(tmp_path / "dest"), items, colorizer, run_id="r", shard=0, io_threads=0)
    assert outcome.counts == {"skipped": 1}


@needs_exiftool
@pytest.mark.parametrize("name", ["gray-I16.tif", "gray-I16.png", "rgba16.tif"])
def test_16bit_labels_read_with_exiftool(src_dir: Path, tmp_path: Path, colorizer: Colorizer, name: str) -> None:
    assert EXIFTOOL, "exiftool is required in CI"
    (result,) = colorize_files(expand_inputs([src_dir / "box" / name]), tmp_path / "out", colorizer)
    assert result.ok, result.error
    run = subprocess.run([EXIFTOOL, "-j", "-G", str(result.output)], check=True, capture_output=True, text=True, timeout=60)
    (tags,) = json.loads(run.stdout)
    assert not [k for k in tags if k.endswith(":Warning")], tags
    assert tags["XMP:DigitalSourceType"] == prov.DIGITAL_SOURCE_TYPE
    assert tags["XMP:Source"] == name
    assert tags["XMP:ModelId"] == colorizer.model_id
    assert tags["XMP:CreatorTool"] == prov.software()
    assert tags["EXIF:Software"] == prov.software()
    assert tags["EXIF:Orientation"] == "Horizontal (normal)"
    assert str(tags.get("EXIF:BitsPerSample", tags.get("PNG:BitDepth"))).split()[0] == "16"
    if sources()[name][3]:
        assert (tags["EXIF:Make"], tags["EXIF:Model"], tags["EXIF:Artist"]) == ("Nikon", "F3", "A. Photographer")


@pytest.mark.parametrize("suffix", [".tif", ".png"])
def test_8bit_sources_give_the_same_8bit_outputs_as_before(tmp_path: Path, colorizer: Colorizer, suffix: str) -> None:
    g8 = (gradient() >> 8).astype(np.uint8)
    src = tmp_path / f"gray8{suffix}"
    Image.fromarray(g8, "L").save(src)
    (result,) = colorize_files(expand_inputs([src]), tmp_path / "out", colorizer)
    assert result.ok, result.error
    data = Path(result.output).read_bytes()  # type: ignore[arg-type]
    img = decode(src.read_bytes(), keep_exif=True)
    expected = encode(colorizer.colorize([img])[0], output_format_for(src.name), Provenance(colorizer.model_id, src.name, None))
    assert data == expected  # byte for byte the 8-bit path
    assert read16(data, ".tif").dtype == np.uint8 if suffix == ".tif" else Image.open(io.BytesIO(data)).mode == "RGB"


def test_colorize_keeps_8bit_outputs_for_16bit_sources(colorizer: Colorizer) -> None:
    """`Colorizer.colorize` is unchanged: 8-bit RGB for any source; only writers ask for 16 bits."""
    src = Image.fromarray(gradient())
    (eight,) = colorizer.colorize([src])
    (sixteen,) = colorizer.colorize_keeping_depth([src])
    assert eight.mode == "RGB" and isinstance(sixteen, Image16)
    assert np.abs(np.asarray(sixteen.to_8bit(), dtype=np.int16) - np.asarray(eight, dtype=np.int16)).max() <= 1


@pytest.mark.parametrize("channels", [3, 4])
def test_the_png_writer_round_trips_across_strips(monkeypatch: pytest.MonkeyPatch, channels: int) -> None:
    monkeypatch.setattr(deep, "_STRIP_BYTES", 7 * 29 * 2 * channels)  # strips of 7 rows, the last shorter
    pixels = np.random.default_rng(0).integers(0, 65536, (45, 29, channels), dtype=np.uint16)
    data = encode(Image16(pixels), output_format_for("x.png"))
    assert np.array_equal(read16(data, ".png"), pixels)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), (pixels >> 8).astype(np.uint8))


@pytest.mark.parametrize("channels", [3, 4])
def test_the_tiff_writer_round_trips_across_strips(monkeypatch: pytest.MonkeyPatch, channels: int) -> None:
    monkeypatch.setattr(deep, "_STRIP_BYTES", 7 * 29 * 2 * channels)
    pixels = np.random.default_rng(1).integers(0, 65536, (45, 29, channels), dtype=np.uint16)
    data = encode(Image16(pixels), output_format_for("x.tif"), Provenance("m", "k", None))
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        assert len(tif.pages[0].dataoffsets) == 7  # strips, not one 100 MP block
        assert np.array_equal(tif.pages[0].asarray(), pixels)
    img = Image.open(io.BytesIO(data))
    check_label(img, key="k", model="m")


def test_formats_without_16_bits_get_the_nearest_8bit_image() -> None:
    pixels = rgb16()
    data = encode(Image16(pixels), output_format_for("x.webp"))
    img = Image.open(io.BytesIO(data))
    assert img.format == "WEBP" and img.mode == "RGB"  # lossless WebP
    assert np.abs(np.asarray(img, dtype=np.float64) - pixels / 257.0).max() <= 0.5 + 1e-9


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_16bit_rgb_tiff_is_turned_upright_like_pillows_8bit_copy(orientation: int) -> None:
    pixels = rgb16()
    data = _tifffile_bytes(pixels, photometric="rgb", extratags=[(274, "H", 1, orientation, True)])
    img = decode(data)
    deep = img.info[RGB16_INFO]
    assert deep.shape == (img.height, img.width, 3)
    assert np.array_equal((deep >> 8).astype(np.uint8), np.asarray(img))  # the same turn as Pillow's


def test_a_corrupt_16bit_source_fails_alone(src_dir: Path, tmp_path: Path, colorizer: Colorizer) -> None:
    good = src_dir / "box" / "gray-I16.png"
    bad = src_dir / "box" / "broken.tif"
    bad.write_bytes((src_dir / "box" / "rgb16.tif").read_bytes()[:300])
    results = colorize_files(expand_inputs([bad, good]), tmp_path / "out", colorizer)
    assert [r.ok for r in results] == [False, True]
    assert results[0].error


@pytest.mark.parametrize("orientation", [3, 6])
def test_a_16bit_rgb_png_is_turned_upright_like_pillows_8bit_copy(orientation: int) -> None:
    img = decode(_with_exif_orientation(_png16_bytes(rgb16()), orientation))
    assert img.size == ((W, H) if orientation == 3 else (H, W))
    assert np.array_equal((img.info[RGB16_INFO] >> 8).astype(np.uint8), np.asarray(img))  # the same turn as Pillow's


def test_a_16bit_rgb_png_the_reader_cannot_read_is_colorized_from_8_bits(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("png_decode: an unknown chunk")

    monkeypatch.setattr(deep.imagecodecs, "png_decode", refuse)
    img = decode(_png16_bytes(rgb16()), name="odd.png")
    assert img.mode == "RGB" and RGB16_INFO not in img.info
    assert "odd.png: 16-bit RGB PNG read with 8 bits a sample" in caplog.text


def test_an_8bit_rgb_png_is_not_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an 8-bit PNG was decoded twice")

    monkeypatch.setattr(deep.imagecodecs, "png_decode", refuse)
    img = decode(_pillow_bytes(Image.new("RGB", (W, H), (9, 80, 200)), "PNG"))
    assert RGB16_INFO not in img.info


def test_a_16bit_rgb_tiff_tifffile_cannot_read_is_colorized_from_8_bits(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A compression tifffile has no codec for: the photo still gets an output, at 8 bits."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise ValueError("<COMPRESSION.LZW: 5> requires the 'imagecodecs' package")

    monkeypatch.setattr(tifffile, "TiffFile", refuse)
    img = decode(_tifffile_bytes(rgb16(), photometric="rgb"), name="lzw.tif")
    assert img.mode == "RGB" and RGB16_INFO not in img.info
    assert "lzw.tif: 16-bit RGB TIFF read with 8 bits a sample" in caplog.text
