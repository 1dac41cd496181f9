"""Provenance labels: every colorized output says in its metadata that a trained model made it
(storage/provenance.py), keeps the source's EXIF upright, and reads back with two independent
readers: Pillow (the XMP packet parsed with xml.etree) and exiftool."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, JpegImagePlugin, TiffTags

from colorize_core.archive.history import read_output_rows
from colorize_core.archive.shards import colorize_shard
from colorize_core.archive.listing import list_images
from colorize_core.local_files import colorize_files, expand_inputs
from colorize_core.model.infer import Colorizer
from colorize_core.storage import provenance as prov
from colorize_core.storage.imageio import decode, encode, output_format_for
from colorize_core.storage.provenance import (
    Provenance,
    jpeg_source_exif,
    label_output,
    output_exif,
)
from colorize_core.storage.stores import open_store
from tests.conftest import jpeg_bytes, make_photo

EXIFTOOL = shutil.which("exiftool")
# In CI a missing exiftool is a failure (.ci/run installs it); elsewhere these tests are skipped.
needs_exiftool = pytest.mark.skipif(EXIFTOOL is None and not os.environ.get("CI"), reason="exiftool not installed")

KEY = "box 1/a&b <c>.jpg"  # characters that need XML escaping
MODEL = "tiny-model-0123 & <co>"
RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
DATE = "1961:07:04 12:30:00"
DESCRIPTION = "Grand-mère & Grandpa <at the lake>"  # UTF-8 in EXIF, as many archives write captions
# (output suffix, how the output is made): Pillow's encode, or byte insertion into a plain JPEG
# (what the device-JPEG path does with the GPU encoder's bytes)
WAYS = [("jpg", "pillow"), ("jpg", "bytes"), ("png", "pillow"), ("tif", "pillow"), ("webp", "pillow")]


def source_exif(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "Nikon"  # Make
    exif[0x0110] = "F3"  # Model
    exif[0x010E] = DESCRIPTION.encode()  # ImageDescription, as UTF-8 bytes
    exif[0x013B] = "A. Photographer"  # Artist
    exif[0x0112] = orientation
    exif[0x8769] = {0x9003: DATE}  # Exif IFD: DateTimeOriginal
    return exif


def tiff_source(img: Image.Image, orientation: int = 1) -> bytes:
    """A TIFF with `source_exif`'s tags in IFD 0 and its Exif IFD, as a scanner writes them
    (through `tiffinfo`: Pillow's TIFF writer turns EXIF text into ASCII, and libtiff's cannot
    write an Exif IFD at all, hence uncompressed)."""
    exif = source_exif(orientation)
    buf = io.BytesIO()
    img.save(buf, format="TIFF", tiffinfo=dict(exif))  # the Exif IFD as a dict: written as a sub-IFD
    return buf.getvalue()


def xmp_properties(img: Image.Image) -> dict[str, str]:
    """{"{namespace}Name": value} of the rdf:Description in the image's XMP packet (JPEG, TIFF and
    WebP: info["xmp"]; PNG: the iTXt text), element and attribute forms alike; {} without XMP."""
    packet = img.info.get("xmp") or img.info.get("XML:com.adobe.xmp")
    if not packet:
        return {}
    root = ET.fromstring(packet)
    props: dict[str, str] = {}
    for desc in root.iter(f"{RDF}Description"):
        props.update({k: v for k, v in desc.attrib.items() if not k.startswith(RDF)})
        props.update({child.tag: (child.text or "") for child in desc})
    return props


def check_label(img: Image.Image, key: str = KEY, model: str = MODEL) -> None:
    xmp = xmp_properties(img)
    assert xmp[f"{{{prov.NS_IPTC4XMPEXT}}}DigitalSourceType"] == prov.DIGITAL_SOURCE_TYPE
    assert xmp[f"{{{prov.NS_DC}}}source"] == key
    assert xmp[f"{{{prov.NS_COLORIZE}}}ModelId"] == model
    assert xmp[f"{{{prov.NS_XMP}}}CreatorTool"] == prov.software()
    assert prov.software().startswith("colorize ")


def check_exif(img: Image.Image) -> None:
    exif = img.getexif()
    assert (exif[0x010F], exif[0x0110], exif[0x013B]) == ("Nikon", "F3", "A. Photographer")
    assert exif[0x010E].encode("latin-1").decode() == DESCRIPTION  # Pillow reads EXIF text as Latin-1
    assert exif.get_ifd(0x8769)[0x9003] == DATE
    assert exif[0x0112] == 1  # decode() turned the pixels upright
    assert exif[0x0131] == prov.software()
    dims = tuple(exif.get_ifd(0x8769).get(tag) for tag in (0xA002, 0xA003))  # Exif pixel dimensions
    assert dims == ((None, None) if img.format == "TIFF" else img.size)  # the output's, upright


def gray_source(orientation: int = 1) -> bytes:
    """A gray JPEG with the test's EXIF, as a scanner or camera would write it."""
    return jpeg_bytes(make_photo(np.random.default_rng(3), 30, 44).convert("L"), exif=source_exif(orientation))


def labelled(suffix: str, how: str, key: str = KEY, orientation: int = 6) -> bytes:
    """A stand-in colorized output of `gray_source`, labelled the way `how` names."""
    src = decode(gray_source(orientation), keep_exif=True)
    provenance = Provenance(MODEL, key, src.info["source_exif"])
    colored = Image.merge("RGB", [src, src.point(lambda v: v // 2), src.point(lambda v: 255 - v)])
    if how == "bytes":
        return label_output(jpeg_bytes(colored, quality=95), "JPEG", provenance)
    return encode(colored, output_format_for(f"x.{suffix}"), provenance)


@pytest.mark.parametrize(("suffix", "how"), WAYS)
def test_round_trip_with_pillow(suffix: str, how: str) -> None:
    data = labelled(suffix, how)
    img = Image.open(io.BytesIO(data))
    img.load()
    assert img.format == output_format_for(f"x.{suffix}").pil_format
    assert img.size == (30, 44)  # the orientation-6 source, upright: its width and height swapped
    check_label(img)
    check_exif(img)


@needs_exiftool
@pytest.mark.parametrize(("suffix", "how"), WAYS)
def test_round_trip_with_exiftool(suffix: str, how: str, tmp_path: Path) -> None:
    assert EXIFTOOL, "exiftool is required in CI"
    path = tmp_path / f"out.{suffix}"
    path.write_bytes(labelled(suffix, how))
    run = subprocess.run([EXIFTOOL, "-j", "-G", str(path)], check=True, capture_output=True, text=True, timeout=60)
    (tags,) = json.loads(run.stdout)
    assert "Warning" not in str({k: v for k, v in tags.items() if k.endswith(":Warning")}), tags
    assert tags["XMP:DigitalSourceType"] == prov.DIGITAL_SOURCE_TYPE
    assert tags["XMP:Source"] == KEY
    assert tags["XMP:ModelId"] == MODEL
    assert tags["XMP:CreatorTool"] == prov.software()
    assert (tags["EXIF:Make"], tags["EXIF:Model"], tags["EXIF:ImageDescription"]) == ("Nikon", "F3", DESCRIPTION)
    assert tags["EXIF:Artist"] == "A. Photographer"
    assert tags["EXIF:DateTimeOriginal"] == DATE
    assert tags["EXIF:Orientation"] == "Horizontal (normal)"
    assert tags["EXIF:Software"] == prov.software()


@needs_exiftool
@pytest.mark.parametrize("suffix", ["jpg", "tif"])
def test_tags_keep_the_types_a_camera_gave_them(suffix: str, tmp_path: Path) -> None:
    """exiftool writes the source as a camera would (UserComment UNDEFINED, ExposureCompensation
    SRATIONAL, a MakerNote); the output holds the same values with the same types."""
    assert EXIFTOOL, "exiftool is required in CI"
    src = tmp_path / "src.jpg"
    src.write_bytes(gray_source(orientation=8))
    subprocess.run(
        [EXIFTOOL, "-q", "-overwrite_original", "-UserComment=Caption: Grand-mère", "-ExposureCompensation=-0.7", "-ExifVersion=0232",
         "-Copyright=(c) Family archive", str(src)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    img = decode(src.read_bytes(), keep_exif=True)
    out = tmp_path / f"out.{suffix}"
    out.write_bytes(encode(img.convert("RGB"), output_format_for(out.name), Provenance(MODEL, KEY, img.info["source_exif"])))
    read = [EXIFTOOL, "-j", "-G", "-a", "-validate", "-warning", "-UserComment", "-ExposureCompensation", "-ExifVersion", "-Copyright"]
    before = json.loads(subprocess.run([*read, str(src)], check=True, capture_output=True, text=True, timeout=60).stdout)[0]
    after = json.loads(subprocess.run([*read, str(out)], check=True, capture_output=True, text=True, timeout=60).stdout)[0]
    for tag in ("EXIF:UserComment", "EXIF:ExposureCompensation", "EXIF:ExifVersion", "EXIF:Copyright"):
        assert after[tag] == before[tag], tag
    assert "Non-standard format" not in json.dumps(after)  # types kept, not guessed


def test_bmp_cannot_carry_a_label_and_is_written_plain() -> None:
    img = Image.new("RGB", (8, 6), (10, 200, 30))
    fmt = output_format_for("x.bmp")
    assert encode(img, fmt, Provenance(MODEL, KEY, source_exif().tobytes())) == encode(img, fmt)


def test_jpeg_segments_go_after_jfif_and_replace_old_labels() -> None:
    plain = jpeg_bytes(Image.new("RGB", (16, 16), (90, 40, 200)))
    assert plain[2:4] == b"\xff\xe0"  # Pillow writes a JFIF APP0, as libjpeg and nvJPEG do
    once = label_output(plain, "JPEG", Provenance(MODEL, "first.jpg"))
    twice = label_output(once, "JPEG", Provenance(MODEL, KEY, source_exif().tobytes()))
    jfif_end = 4 + int.from_bytes(plain[4:6], "big")
    assert twice[:jfif_end] == plain[:jfif_end]  # JFIF stays first
    assert twice[jfif_end : jfif_end + 2] == b"\xff\xe1" and twice[jfif_end + 4 : jfif_end + 10] == b"Exif\x00\x00"
    assert twice.count(b"Exif\x00\x00") == 1 and twice.count(prov.JPEG_XMP_ID) == 1  # replaced, not added
    assert twice.endswith(plain[plain.index(b"\xff\xdb") :])  # tables and scan untouched
    img = Image.open(io.BytesIO(twice))
    check_label(img)
    check_exif(img)
    assert jpeg_source_exif(twice) is not None and jpeg_source_exif(plain) is None


def test_the_source_exif_is_captured_cheaply_and_the_same_either_way() -> None:
    data = gray_source(orientation=6)
    assert jpeg_source_exif(data) == decode(data, keep_exif=True).info["source_exif"]  # device path == Pillow path
    assert decode(jpeg_bytes(Image.new("L", (8, 8))), keep_exif=True).info["source_exif"] is None
    assert "source_exif" not in decode(data).info  # only writers of outputs pay for it


def test_a_tiff_sources_layout_tags_are_not_copied() -> None:
    src = decode(tiff_source(Image.new("L", (12, 10), 90)), keep_exif=True)
    out = Image.open(io.BytesIO(encode(src.convert("RGB"), output_format_for("x.jpg"), Provenance(MODEL, KEY, src.info["source_exif"]))))
    check_exif(out)
    kept = out.getexif()
    assert not {256, 257, 258, 259, 262, 273, 277, 278, 279} & set(kept)  # strips, sizes, bits: the source's


def test_an_oversized_source_exif_loses_its_makernote_first() -> None:
    exif = source_exif()
    exif[0x8769] = {0x9003: DATE, 0x927C: b"\x01" * 70_000}  # MakerNote: over a JPEG segment alone
    data = output_exif(exif.tobytes())
    assert len(data) <= 65533
    kept = Image.Exif()
    kept.load(data)
    assert kept[0x010F] == "Nikon" and kept.get_ifd(0x8769) == {0x9003: DATE}
    garbage = output_exif(b"Exif\x00\x00II*\x00\xff\xff\xff\x7f")  # unreadable: ours alone
    ours = Image.Exif()
    ours.load(garbage)
    assert dict(ours) == {0x0112: 1, 0x0131: prov.software()}


def test_a_tag_pillow_cannot_write_costs_only_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    read = prov._source_tags(source_exif().tobytes())
    assert read is not None
    odd = prov._ExifTags({**read.ifd0, 0xC000: (TiffTags.SHORT, "not a number")}, read.exif, read.gps, read.order)
    monkeypatch.setattr(prov, "_source_tags", lambda source: odd)
    kept = Image.Exif()
    kept.load(output_exif(b"any"))
    assert kept[0x010F] == "Nikon" and 0xC000 not in kept and kept.get_ifd(0x8769)[0x9003] == DATE


def test_keys_with_characters_xml_cannot_hold_still_parse() -> None:
    packet = prov.xmp_packet(Provenance(MODEL, "bad\x01name\udcff.jpg"))
    root = ET.fromstring(packet)
    (source,) = root.iter(f"{{{prov.NS_DC}}}source")
    assert source.text == "bad\ufffdname\ufffd.jpg"
    assert packet == prov.xmp_packet(Provenance(MODEL, "bad\x01name\udcff.jpg"))  # deterministic


@pytest.fixture()
def labelled_archive(tmp_path: Path) -> str:
    """A gray JPEG with EXIF orientation 6 (stored sideways: top dark, bottom bright once upright),
    and a gray PNG and TIFF."""
    uri = str(tmp_path / "src")
    store = open_store(uri)
    upright = np.zeros((48, 32), np.uint8)  # height 48, width 32
    upright[:24] = 40
    upright[24:] = 210
    sideways = Image.fromarray(upright, "L").transpose(Image.Transpose.ROTATE_90)  # orientation 6 turns it back
    store.write("box 1/rotated & <odd>.jpg", jpeg_bytes(sideways, quality=95, exif=source_exif(6)))
    rng = np.random.default_rng(5)
    buf = io.BytesIO()
    make_photo(rng, 30, 40).convert("L").save(buf, format="PNG", exif=source_exif())
    store.write("box 1/scan.png", buf.getvalue())
    store.write("box 2/scan.tif", tiff_source(make_photo(rng, 30, 40).convert("L")))
    return uri


ON_CUDA = pytest.param("cuda", None, marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")])


@pytest.mark.parametrize(("device", "device_jpeg"), [("cpu", False), ("cpu", True), ON_CUDA])  # cuda: nvJPEG's bytes
def test_colorize_shard_labels_its_outputs(labelled_archive: str, tmp_path: Path, tiny_checkpoint: Path, device: str, device_jpeg: bool | None) -> None:
    colorizer = Colorizer.from_checkpoint(tiny_checkpoint, device=device, batch_size=4)
    items = list_images(open_store(labelled_archive))
    dest = tmp_path / "out"
    outcome = colorize_shard(labelled_archive, str(dest), items, colorizer, run_id="r", shard=0, device_jpeg=device_jpeg)
    assert outcome.counts == {"ok": 3}
    rows = {r["key"]: r for r in read_output_rows(str(dest))}
    for key, row in rows.items():
        img = Image.open(dest / row["output_key"])
        check_label(img, key=key, model=colorizer.model_id)
        check_exif(img)
    rotated = Image.open(dest / rows["box 1/rotated & <odd>.jpg"]["output_key"])
    assert rotated.size == (32, 48)  # upright
    luma = np.asarray(rotated.convert("L"), dtype=np.float64)
    assert luma[:20].mean() < 80 and luma[28:].mean() > 170  # the dark half on top
    assert rotated.getexif()[0x0112] == 1
    # which encoder made it: the device's (4:2:0, labelled by byte insertion) or Pillow's (4:4:4)
    assert JpegImagePlugin.get_sampling(rotated) == (0 if device_jpeg is False else 2)


def test_colorize_shard_without_label_writes_bare_outputs(labelled_archive: str, tmp_path: Path, tiny_checkpoint: Path) -> None:
    colorizer = Colorizer.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=4)
    items = list_images(open_store(labelled_archive))
    for device_jpeg in (False, True):
        dest = tmp_path / f"out-{device_jpeg}"
        colorize_shard(labelled_archive, str(dest), items, colorizer, run_id="r", shard=0, device_jpeg=device_jpeg, label=False)
        rows = read_output_rows(str(dest))
        assert [r["status"] for r in rows] == ["ok"] * 3
        for row in rows:
            assert row["model_id"] == colorizer.model_id  # the Parquet row still says which model
            data = (dest / row["output_key"]).read_bytes()
            assert xmp_properties(Image.open(io.BytesIO(data))) == {}
            assert b"compositeWithTrainedAlgorithmicMedia" not in data


def test_colorize_files_labels_with_the_relative_path(labelled_archive: str, tmp_path: Path, tiny_checkpoint: Path) -> None:
    colorizer = Colorizer.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=4)
    pairs = expand_inputs([labelled_archive])
    results = colorize_files(pairs, tmp_path / "out", colorizer)
    assert all(r.ok for r in results)
    for (_, rel), result in zip(pairs, results):
        img = Image.open(result.output)  # type: ignore[arg-type]
        check_label(img, key=rel.as_posix(), model=colorizer.model_id)  # never the absolute path
        check_exif(img)
    bare = colorize_files(pairs, tmp_path / "bare", colorizer, label=False)
    assert all(xmp_properties(Image.open(r.output)) == {} for r in bare)  # type: ignore[arg-type]
