"""The steps one source takes through an archive shard: load, (decode on the device,) colorize,
store, each ending in exactly one metadata row (records.OUTPUT_SCHEMA).

Two ways through (the Colorize stage's two implementations, `OnDevice` and `WithPillow`), with
the same rows:
- Pillow: an I/O thread reads and decodes; the model thread colorizes; an I/O thread encodes
  and writes. Any format, alpha kept. The only way on CPU by default.
- Device JPEG (`device_jpeg`): an I/O thread reads and probes the header; the model thread
  decodes the batch with nvJPEG, colorizes and encodes on the GPU; an I/O thread writes. Plain
  JPEGs only; whatever the probe or the device decoder refuses falls back to Pillow, so a bad
  file still gets Pillow's reason and a good but unusual one still gets colorized.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from colorize_core.archive.failures import current_judge
from colorize_core.archive.listing import ListedObject
from colorize_core.archive.reasons import VANISHED, already_colour, unreadable_key, unsafe_key, unstorable
from colorize_core.model.color import rgb_to_y
from colorize_core.model.infer import Colorizer
from colorize_core.model.metrics import REDUCED_PIXELS, colourfulness_tensor, image_colourfulness
from colorize_core.monochrome import GRAY_IMAGE, THUMB, Verdict, decision_id, judge, judge_thumbnail
from colorize_core.storage.deep import Image16
from colorize_core.storage.imageio import ColorImage, ImageDecodeError, decode, encode, output_format_for, output_name_for
from colorize_core.storage.jpeg_codec import JpegHeader, decode_jpegs, encode_jpegs, orient, probe_jpeg
from colorize_core.storage.objects import InvalidKeyError, ObjectInfo, ObjectNotFound, ObjectStore
from colorize_core.storage.provenance import Provenance, jpeg_source_exif, label_output
from colorize_core.storage.records import OUTPUT_SCHEMA

# Decoded pixels one device batch may hold at once (~10 bytes each through colorize and encode):
# a batch of 100 MP scans is split rather than run out of GPU memory.
DEVICE_BATCH_PIXELS = 400_000_000


def make_row(obj: ObjectInfo, model_id: str, run_id: str, **values: Any) -> dict[str, Any]:
    """One metadata row. A failed row says whether its fault is the file's (`permanent`, given by
    whoever failed it; unknown counts as not, so it is retried) and which tool judged it: the next
    run's planning trusts both (archive/failures.py). A skipped row (a real colour photo) says
    which black-and-white-or-colour decision judged it: planning leaves it alone while the file
    and the decision are the same."""
    base = {name: None for name in OUTPUT_SCHEMA.names}
    base.update(key=obj.key, source_etag=obj.etag, model_id=model_id, run_id=run_id, error="", processed_at=datetime.now(timezone.utc))
    base.update(values)
    if base["status"] == "failed":
        base["permanent"] = bool(base["permanent"])
        base["judged_by"] = current_judge()
    elif base["status"] == "skipped":
        base["judged_by"] = decision_id()
    return base


@dataclass
class Source:
    """One source on its way through a shard; exactly one of row / image / jpeg / luma is next."""

    obj: ObjectInfo
    row: dict[str, Any] | None = None  # set when the source ends (failed or skipped)
    image: Image.Image | None = None  # decoded by Pillow
    jpeg: bytes | None = None  # waiting for the device decoder
    header: JpegHeader | None = None
    colour: Verdict | None = None  # what the black-and-white-or-colour decision saw and said
    luma: torch.Tensor | None = None  # (H, W) on the device: uint8, or float in [0, 1]
    exif: bytes | None = None  # the source's own EXIF, kept in its labelled output (provenance.py)
    read_s: float = 0.0
    decode_s: float = 0.0


def load(src: ObjectStore, obj: ListedObject, model_id: str, run_id: str, *, skip_colour: bool, device_jpeg: bool) -> Source:
    """Read one source and decode it with Pillow, or keep a plain JPEG's bytes for the device
    decoder (in an I/O thread). A StorageError that outlived its retries propagates."""
    if obj.problem:
        return Source(obj, make_row(obj, model_id, run_id, status="failed", error=unsafe_key(obj.problem), permanent=True))
    t0 = time.perf_counter()
    try:
        data = src.read(obj.key)
    except ObjectNotFound:
        return Source(obj, make_row(obj, model_id, run_id, status="failed", error=VANISHED, permanent=False))
    except InvalidKeyError as exc:
        return Source(obj, make_row(obj, model_id, run_id, status="failed", error=unreadable_key(exc), permanent=exc.permanent))
    read_s = time.perf_counter() - t0
    header = probe_jpeg(data) if device_jpeg else None
    if header is not None:
        return Source(obj, jpeg=data, header=header, read_s=read_s, exif=jpeg_source_exif(data))
    return _decode_with_pillow(Source(obj, read_s=read_s), data, model_id, run_id, skip_colour)


def _decode_with_pillow(item: Source, data: bytes, model_id: str, run_id: str, skip_colour: bool) -> Source:
    t0 = time.perf_counter()
    try:
        img = decode(data, name=item.obj.key, keep_exif=True)
    except ImageDecodeError as exc:
        item.row = make_row(item.obj, model_id, run_id, status="failed", error=exc.reason, permanent=exc.permanent, read_s=item.read_s)
        return item
    if skip_colour and _skipped_as_colour(item, judge(img), model_id, run_id):
        return item
    item.image, item.decode_s, item.exif = img, time.perf_counter() - t0, img.info.get("source_exif")
    return item


def _skipped_as_colour(item: Source, verdict: Verdict, model_id: str, run_id: str) -> bool:
    """Keep the decision's figures with the source (its row shows them, ok or skipped); a real
    colour photo ends here as a skipped row: colorizing it would replace true colour."""
    item.colour = verdict
    if verdict.monochrome:
        return False
    item.row = make_row(item.obj, model_id, run_id, status="skipped", error=already_colour(verdict.reason), read_s=item.read_s, **colour_values(item))
    return True


def colour_values(item: Source) -> dict[str, float]:
    """The decision's figures for the source's row (none when it was not asked: --colour-photos colorize)."""
    if item.colour is None:
        return {}
    e = item.colour.evidence
    return {"mean_chroma": e.mean_chroma, "unexplained_colour": e.unexplained, "bw_score": item.colour.score}


def pixel_groups(items: list[Source], budget: int = DEVICE_BATCH_PIXELS) -> list[list[Source]]:
    """Consecutive groups of device-JPEG sources holding at most `budget` pixels (at least one each)."""
    groups: list[list[Source]] = []
    total = budget + 1
    for item in items:
        assert item.header is not None
        px = item.header.width * item.header.height
        if total + px > budget:
            groups.append([])
            total = 0
        groups[-1].append(item)
        total += px
    return groups


def _thumbnail(rgb: torch.Tensor) -> np.ndarray:
    """(3, H, W) uint8 on any device -> a <= THUMB px uint8 (h, w, 3) array, as monochrome.thumbnail makes."""
    h, w = rgb.shape[-2:]
    scale = min(THUMB / w, THUMB / h, 1.0)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    small = F.interpolate(rgb[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    return small.round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def decode_on_device(items: list[Source], device: torch.device, model_id: str, run_id: str, *, skip_colour: bool) -> None:
    """Decode the batch's JPEGs on `device` into luma planes; check colour photos' colour on a
    thumbnail; hand files the device decoder refuses to Pillow."""
    t0 = time.perf_counter()
    for gray in (True, False):
        group = [item for item in items if item.header is not None and item.header.gray == gray]
        if not group:
            continue
        decoded = decode_jpegs([item.jpeg for item in group], gray=gray, device=device)  # type: ignore[misc]
        for item, pixels in zip(group, decoded):
            data, header = item.jpeg, item.header
            item.jpeg = None
            if pixels is None:
                _decode_with_pillow(item, data, model_id, run_id, skip_colour)  # type: ignore[arg-type]
                continue
            pixels = orient(pixels, header.orientation)  # type: ignore[union-attr]
            if gray:
                item.luma = pixels[0]  # uint8: colorize_planes reads it a strip at a time
                item.colour = GRAY_IMAGE if skip_colour else None
            elif not (skip_colour and _skipped_as_colour(item, judge_thumbnail(_thumbnail(pixels)), model_id, run_id)):
                item.luma = rgb_to_y(pixels.float() / 255.0)[0]
    each = (time.perf_counter() - t0) / max(1, len(items))
    for item in items:
        item.decode_s = item.decode_s or each


def colorize_on_device(items: list[Source], colorizer: Colorizer) -> list[tuple[Source, str, bytes | Image.Image, dict[str, Any]]]:
    """Colorize luma planes on the device and encode JPEG outputs there too.

    Returns (source, output key, encoded bytes or a PIL image for Pillow to encode, row values)."""
    t0 = time.perf_counter()
    rgbs = colorizer.colorize_planes([item.luma for item in items])  # type: ignore[misc]
    if rgbs and rgbs[0].is_cuda:
        torch.cuda.synchronize()  # honest per-stage timings; the encode below waits anyway
    infer_each = (time.perf_counter() - t0) / len(items)
    t1 = time.perf_counter()
    keys = [output_name_for(item.obj.key) for item in items]
    as_jpeg = [i for i, key in enumerate(keys) if output_format_for(key).pil_format == "JPEG"]
    encoded: dict[int, bytes] = {}
    if as_jpeg:
        try:
            encoded = dict(zip(as_jpeg, encode_jpegs([rgbs[i] for i in as_jpeg])))
        except Exception:  # noqa: BLE001 - the device encoder refused: Pillow encodes these in I/O threads
            encoded = {}
    encode_each = (time.perf_counter() - t1) / len(items)
    results: list[tuple[Source, str, bytes | Image.Image, dict[str, Any]]] = []
    for i, (item, key, rgb) in enumerate(zip(items, keys, rgbs)):
        item.luma = None  # free device memory early
        values = {"width": rgb.shape[2], "height": rgb.shape[1], "infer_s": infer_each, "colourfulness": colourfulness_tensor(rgb)}
        if i in encoded:
            results.append((item, key, encoded[i], {**values, "encode_s": encode_each}))
        else:
            results.append((item, key, Image.fromarray(rgb.permute(1, 2, 0).cpu().numpy(), "RGB"), values))
    return results


# What colorizing hands to encoding and writing: the source, its output key, the result (JPEG
# bytes the device encoded, or an image for `write_output` to encode) and its row's figures so far.
Colorized = tuple[Source, str, "bytes | ColorImage", dict[str, Any]]


class ColorizeStage(Protocol):
    """Decode and colorize the sources of one batch that this way can take, yielding each result;
    what it cannot take it leaves for the next stage (`colorize_stages`)."""

    def __call__(self, chunk: list[Source]) -> Iterator[Colorized]: ...


@dataclass(frozen=True)
class OnDevice:
    """Plain JPEGs decoded, colorized and encoded on the model's device (nvJPEG on CUDA), in
    groups of at most DEVICE_BATCH_PIXELS; what the device decoder refuses is decoded by Pillow
    and left for `WithPillow`."""

    colorizer: Colorizer
    run_id: str
    skip_colour: bool

    def __call__(self, chunk: list[Source]) -> Iterator[Colorized]:
        for group in pixel_groups([item for item in chunk if item.jpeg is not None]):
            decode_on_device(group, self.colorizer.device, self.colorizer.model_id, self.run_id, skip_colour=self.skip_colour)
            on_device = [item for item in group if item.luma is not None]
            if on_device:
                yield from colorize_on_device(on_device, self.colorizer)


@dataclass(frozen=True)
class WithPillow:
    """Sources Pillow decoded (any format, alpha kept; 16-bit in, 16-bit out), colorized in one
    batch; the outputs are encoded by `write_output` in an I/O thread."""

    colorizer: Colorizer

    def __call__(self, chunk: list[Source]) -> Iterator[Colorized]:
        todo = [item for item in chunk if item.image is not None]
        if not todo:
            return
        t0 = time.perf_counter()
        colored = self.colorizer.colorize_keeping_depth([item.image for item in todo])  # type: ignore[misc]
        infer_each = (time.perf_counter() - t0) / len(todo)
        for item, result in zip(todo, colored):
            item.image = None  # free the decoded source early
            yield item, output_name_for(item.obj.key), result, {"infer_s": infer_each}


def colorize_stages(colorizer: Colorizer, run_id: str, skip_colour: bool) -> tuple[ColorizeStage, ...]:
    """The ways a batch is colorized, in order: the device first, so that the JPEGs its decoder
    refuses reach Pillow in the same batch."""
    return (OnDevice(colorizer, run_id, skip_colour), WithPillow(colorizer))


def write_output(
    out: ObjectStore, item: Source, out_key: str, result: bytes | ColorImage, values: dict[str, Any], model_id: str, run_id: str, label: bool = True
) -> dict[str, Any]:
    """Encode (when given an image: a PIL image, or an `Image16` from a 16-bit source, written as
    a 16-bit TIFF or PNG) and write one output (in an I/O thread); returns its row: ok, or failed
    when the destination cannot hold this one name (a full disk fails the shard).
    `label`: the output's metadata says a trained model colorized it (provenance.py)."""
    t0 = time.perf_counter()
    provenance = Provenance(model_id, item.obj.key, item.exif) if label else None
    if isinstance(result, (Image.Image, Image16)):
        if "colourfulness" not in values:  # the device path measured it already
            values = {**values, "width": result.width, "height": result.height, "colourfulness": _colourfulness(result)}
        result = encode(result, output_format_for(out_key), provenance)
    elif provenance is not None:  # JPEG bytes from the device encoder: labelled by inserting segments
        result = label_output(result, "JPEG", provenance)
    try:
        out.write(out_key, result)
    except InvalidKeyError as exc:
        return make_row(item.obj, model_id, run_id, status="failed", error=unstorable(exc), permanent=exc.permanent, read_s=item.read_s)
    # encode and write: the device's share of the batch encode (if any) plus this thread's work
    values = {**values, "encode_s": values.get("encode_s", 0.0) + time.perf_counter() - t0}
    return make_row(
        item.obj, model_id, run_id, status="ok", output_key=out_key, read_s=item.read_s, decode_s=item.decode_s, **values, **colour_values(item)
    )


def _colourfulness(img: ColorImage) -> float:
    """`image_colourfulness` (0..255 units), of an 8-bit sample for a 16-bit image."""
    return image_colourfulness(img.preview(REDUCED_PIXELS) if isinstance(img, Image16) else img)
