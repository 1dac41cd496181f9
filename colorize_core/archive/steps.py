"""The steps one source takes through an archive shard, as typed items: `load` reads it into
`Ended` (its failed or skipped row, before the model), `Decoded` (Pillow decoded it) or `Jpeg`
(a plain JPEG's bytes for the device decoder); the colorize stages turn those into `Plane` (luma
on the device) and `Colorized` (a result to encode and write); `write_output` ends each
`Colorized` in its row. Every source ends in exactly one metadata row (records.OUTPUT_SCHEMA);
`Facts` carries what its row says of it beyond the model (timings, the colour decision, EXIF).

Two stages colorize (`ColorizeStage`: each takes the items it can and hands the rest on), with
the same rows:
- `OnDevice` (device JPEG): an I/O thread reads and probes the header; the model thread decodes
  the batch with nvJPEG, colorizes and encodes on the GPU; an I/O thread writes. Plain JPEGs
  only; whatever the probe or the device decoder refuses falls back to Pillow, so a bad file
  still gets Pillow's reason and a good but unusual one still gets colorized.
- `WithPillow`: an I/O thread reads and decodes; the model thread colorizes; an I/O thread
  encodes and writes. Any format, alpha kept. The only way on CPU by default.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from colorize_core.archive.failures import current_judge
from colorize_core.archive.listing import ListedObject
from colorize_core.archive.reasons import SIGNED, VANISHED, already_colour, not_signed, unreadable_key, unsafe_key, unsigned, unstorable
from colorize_core.model.color import rgb_to_y
from colorize_core.model.infer import Colorizer
from colorize_core.model.metrics import REDUCED_PIXELS, colourfulness_tensor, image_colourfulness
from colorize_core.monochrome import GRAY_IMAGE, THUMB, Verdict, decision_id, judge, judge_thumbnail
from colorize_core.storage.credentials import ContentSigner, NotSignable, Origin
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


@dataclass(frozen=True)
class Facts:
    """What a source's row says of it beyond the model's figures, gathered on its way."""

    obj: ObjectInfo
    read_s: float = 0.0
    decode_s: float = 0.0
    colour: Verdict | None = None  # what the black-and-white-or-colour decision saw and said
    exif: bytes | None = None  # the source's own EXIF, kept in its labelled output (provenance.py)
    origin: Origin | None = None  # the source as a signed output's manifest names it (only when signing)


@dataclass(frozen=True)
class Ended:
    """A source that ends before the model: its failed or skipped row."""

    row: dict[str, Any]


@dataclass(frozen=True)
class Decoded:
    """Decoded by Pillow, for `WithPillow`."""

    facts: Facts
    image: ColorImage


@dataclass(frozen=True)
class Jpeg:
    """A plain JPEG's bytes and header, for the device decoder (`OnDevice`)."""

    facts: Facts
    data: bytes
    header: JpegHeader


@dataclass(frozen=True)
class Plane:
    """Decoded on the device: the luma plane (H, W), uint8 or float in [0, 1]."""

    facts: Facts
    luma: torch.Tensor


@dataclass(frozen=True)
class Colorized:
    """Colorized, for `write_output`: the output's key, the result (JPEG bytes the device
    encoded, or an image to encode in an I/O thread) and its row's figures so far."""

    facts: Facts
    out_key: str
    result: bytes | ColorImage
    values: dict[str, Any]


Loaded = Ended | Decoded | Jpeg  # what `load` gives
Item = Ended | Decoded | Jpeg | Plane | Colorized  # what flows between the stages


def load(src: ObjectStore, obj: ListedObject, model_id: str, run_id: str, *, skip_colour: bool, device_jpeg: bool, signing: bool = False) -> Loaded:
    """Read one source and decode it with Pillow, or keep a plain JPEG's bytes for the device
    decoder (in an I/O thread). `signing`: hash the source for its output's Content Credentials.
    A StorageError that outlived its retries propagates."""
    if obj.problem:
        return Ended(make_row(obj, model_id, run_id, status="failed", error=unsafe_key(obj.problem), permanent=True))
    t0 = time.perf_counter()
    try:
        data = src.read(obj.key)
    except ObjectNotFound:
        return Ended(make_row(obj, model_id, run_id, status="failed", error=VANISHED, permanent=False))
    except InvalidKeyError as exc:
        return Ended(make_row(obj, model_id, run_id, status="failed", error=unreadable_key(exc), permanent=exc.permanent))
    facts = Facts(obj, read_s=time.perf_counter() - t0)
    header = probe_jpeg(data) if device_jpeg else None
    if header is not None:
        origin = Origin.of(obj.key, data, model_id, "JPEG") if signing else None
        return Jpeg(replace(facts, exif=jpeg_source_exif(data), origin=origin), data, header)
    return _decode_with_pillow(facts, data, model_id, run_id, skip_colour, signing)


def _decode_with_pillow(facts: Facts, data: bytes, model_id: str, run_id: str, skip_colour: bool, signing: bool = False) -> Decoded | Ended:
    t0 = time.perf_counter()
    try:
        img = decode(data, name=facts.obj.key, keep_exif=True)
    except ImageDecodeError as exc:
        return Ended(make_row(facts.obj, model_id, run_id, status="failed", error=exc.reason, permanent=exc.permanent, read_s=facts.read_s))
    if signing and facts.origin is None:
        facts = replace(facts, origin=Origin.of(facts.obj.key, data, model_id))
    if skip_colour:
        judged = _judged(facts, judge(img), model_id, run_id)
        if isinstance(judged, Ended):
            return judged
        facts = judged
    return Decoded(replace(facts, decode_s=time.perf_counter() - t0, exif=img.info.get("source_exif")), img)


def _judged(facts: Facts, verdict: Verdict, model_id: str, run_id: str) -> Facts | Ended:
    """The decision's figures kept with the source (its row shows them, ok or skipped); a real
    colour photo ends here as a skipped row: colorizing it would replace true colour."""
    facts = replace(facts, colour=verdict)
    if verdict.monochrome:
        return facts
    return Ended(make_row(facts.obj, model_id, run_id, status="skipped", error=already_colour(verdict.reason), read_s=facts.read_s, **colour_values(facts)))


def colour_values(facts: Facts) -> dict[str, float]:
    """The decision's figures for the source's row (none when it was not asked: --colour-photos colorize)."""
    if facts.colour is None:
        return {}
    e = facts.colour.evidence
    return {"mean_chroma": e.mean_chroma, "unexplained_colour": e.unexplained, "bw_score": facts.colour.score}


def pixel_groups(items: list[Jpeg], budget: int = DEVICE_BATCH_PIXELS) -> list[list[Jpeg]]:
    """Consecutive groups of device-JPEG sources holding at most `budget` pixels (at least one each)."""
    groups: list[list[Jpeg]] = []
    total = budget + 1
    for item in items:
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


def decode_on_device(items: list[Jpeg], device: torch.device, model_id: str, run_id: str, *, skip_colour: bool) -> list[Plane | Decoded | Ended]:
    """Decode the group's JPEGs on `device` into luma planes, in order; check colour photos'
    colour on a thumbnail; hand the files the device decoder refuses to Pillow. `items` is
    emptied as it is read (each JPEG's bytes freed once decoded)."""
    t0 = time.perf_counter()
    done: list[Plane | Decoded | Ended | None] = [None] * len(items)
    for gray in (True, False):
        group = [i for i, item in enumerate(items) if item.header.gray == gray]
        if not group:
            continue
        decoded = decode_jpegs([items[i].data for i in group], gray=gray, device=device)
        for i, pixels in zip(group, decoded):
            item = items[i]
            if pixels is None:
                done[i] = _decode_with_pillow(item.facts, item.data, model_id, run_id, skip_colour, item.facts.origin is not None)
                continue
            pixels = orient(pixels, item.header.orientation)
            if gray:  # uint8: colorize_planes reads it a strip at a time
                done[i] = Plane(replace(item.facts, colour=GRAY_IMAGE if skip_colour else None), pixels[0])
                continue
            judged = _judged(item.facts, judge_thumbnail(_thumbnail(pixels)), model_id, run_id) if skip_colour else item.facts
            done[i] = judged if isinstance(judged, Ended) else Plane(judged, rgb_to_y(pixels.float() / 255.0)[0])
    items.clear()
    each = (time.perf_counter() - t0) / max(1, len(done))
    return [replace(d, facts=replace(d.facts, decode_s=each)) if isinstance(d, Plane) else d for d in done if d is not None]


def colorize_on_device(planes: list[Plane], colorizer: Colorizer) -> Iterator[Colorized]:
    """Colorize luma planes on the device and encode JPEG outputs there too (the others are
    encoded by `write_output`). `planes` is emptied once colorized (device memory freed)."""
    t0 = time.perf_counter()
    rgbs = colorizer.colorize_planes([p.luma for p in planes])
    if rgbs and rgbs[0].is_cuda:
        torch.cuda.synchronize()  # honest per-stage timings; the encode below waits anyway
    facts = [p.facts for p in planes]
    planes.clear()
    infer_each = (time.perf_counter() - t0) / len(facts)
    t1 = time.perf_counter()
    keys = [output_name_for(f.obj.key) for f in facts]
    as_jpeg = [i for i, key in enumerate(keys) if output_format_for(key).pil_format == "JPEG"]
    encoded: dict[int, bytes] = {}
    if as_jpeg:
        try:
            encoded = dict(zip(as_jpeg, encode_jpegs([rgbs[i] for i in as_jpeg])))
        except Exception:  # noqa: BLE001 - the device encoder refused: Pillow encodes these in I/O threads
            encoded = {}
    encode_each = (time.perf_counter() - t1) / len(facts)
    for i, (f, key, rgb) in enumerate(zip(facts, keys, rgbs)):
        values = {"width": rgb.shape[2], "height": rgb.shape[1], "infer_s": infer_each, "colourfulness": colourfulness_tensor(rgb)}
        if i in encoded:
            yield Colorized(f, key, encoded[i], {**values, "encode_s": encode_each})
        else:
            yield Colorized(f, key, Image.fromarray(rgb.permute(1, 2, 0).cpu().numpy(), "RGB"), values)


T = TypeVar("T")


def _taking(items: Iterable[Item], kind: type[T], taken: list[T]) -> Iterator[Item]:
    """Hands on, at once, every item but those of `kind`, which it puts in `taken`."""
    for item in items:
        if isinstance(item, kind):
            taken.append(item)
        else:
            yield item


class ColorizeStage(Protocol):
    """One step of a batch: takes the items it can (decoding or colorizing them), hands every
    other item on unchanged, at once, so that results are written while the batch goes on."""

    def __call__(self, items: Iterable[Item]) -> Iterator[Item]: ...


@dataclass(frozen=True)
class OnDevice:
    """Plain JPEGs (`Jpeg`) decoded, colorized and encoded on the model's device (nvJPEG on CUDA),
    in groups of at most DEVICE_BATCH_PIXELS; what the device decoder refuses is decoded by
    Pillow and handed on (`Decoded`, or `Ended` with Pillow's reason)."""

    colorizer: Colorizer
    run_id: str
    skip_colour: bool

    def __call__(self, items: Iterable[Item]) -> Iterator[Item]:
        jpegs: list[Jpeg] = []
        yield from _taking(items, Jpeg, jpegs)
        groups = pixel_groups(jpegs)
        jpegs.clear()
        for group in groups:
            planes: list[Plane] = []
            for item in decode_on_device(group, self.colorizer.device, self.colorizer.model_id, self.run_id, skip_colour=self.skip_colour):
                if isinstance(item, Plane):
                    planes.append(item)
                else:
                    yield item
            if planes:
                yield from colorize_on_device(planes, self.colorizer)


@dataclass(frozen=True)
class WithPillow:
    """Sources Pillow decoded (`Decoded`: any format, alpha kept; 16-bit in, 16-bit out),
    colorized in one batch; the outputs are encoded by `write_output` in an I/O thread."""

    colorizer: Colorizer

    def __call__(self, items: Iterable[Item]) -> Iterator[Item]:
        todo: list[Decoded] = []
        yield from _taking(items, Decoded, todo)
        if not todo:
            return
        facts, images = [d.facts for d in todo], [d.image for d in todo]
        todo.clear()
        t0 = time.perf_counter()
        colored = self.colorizer.colorize_keeping_depth(images)
        images.clear()  # the decoded sources freed before the outputs are written
        infer_each = (time.perf_counter() - t0) / len(facts)
        for f, result in zip(facts, colored):
            yield Colorized(f, output_name_for(f.obj.key), result, {"infer_s": infer_each})


def colorize_stages(colorizer: Colorizer, run_id: str, skip_colour: bool) -> tuple[ColorizeStage, ...]:
    """The ways a batch is colorized, in order: the device first, so that the JPEGs its decoder
    refuses reach Pillow in the same batch."""
    return (OnDevice(colorizer, run_id, skip_colour), WithPillow(colorizer))


def run_stages(stages: tuple[ColorizeStage, ...], batch: list[Loaded]) -> Iterator[Colorized | Ended]:
    """A batch through the stages, chained lazily; each item comes out as a result to write
    (`Colorized`) or a row (`Ended`). `batch` is emptied as the first stage reads it, so that a
    stage holds the only reference to what it frees."""

    def drain() -> Iterator[Item]:
        batch.reverse()
        while batch:
            yield batch.pop()

    items: Iterable[Item] = drain()
    for stage in stages:
        items = stage(items)
    for item in items:
        if not isinstance(item, (Colorized, Ended)):
            raise TypeError(f"no stage took a {type(item).__name__} ({item.facts.obj.key})")  # a bug of ours, not the photo's
        yield item


def signed(data: bytes, pil_format: str, origin: Origin | None, signer: ContentSigner | None) -> tuple[bytes, str | None]:
    """An encoded output signed last, with what its row says of it (`SIGNED`, or `unsigned: why`
    for a format that cannot carry Content Credentials); as it is, with None, without a signer.
    Any other failure propagates: the caller fails that output rather than write it unsigned."""
    if signer is None:
        return data, None
    if origin is None:
        raise ValueError("an output to sign came without its source's origin")
    try:
        return signer.sign(data, pil_format, origin), SIGNED
    except NotSignable as exc:
        return data, unsigned(str(exc))


def write_output(out: ObjectStore, done: Colorized, model_id: str, run_id: str, label: bool = True, signer: ContentSigner | None = None) -> dict[str, Any]:
    """Encode (when given an image: a PIL image, or an `Image16` from a 16-bit source, written as
    a 16-bit TIFF or PNG), sign and write one output (in an I/O thread); returns its row: ok, or
    failed when the destination cannot hold this one name (a full disk fails the shard).
    `label`: the output's metadata says a trained model colorized it (provenance.py). `signer`:
    the output carries Content Credentials, signed last (credentials.py); a format that cannot
    carry them is written unsigned, its row saying why."""
    t0 = time.perf_counter()
    facts, out_key, result, values = done.facts, done.out_key, done.result, done.values
    provenance = Provenance(model_id, facts.obj.key, facts.exif) if label else None
    fmt = output_format_for(out_key)
    if isinstance(result, (Image.Image, Image16)):
        if "colourfulness" not in values:  # the device path measured it already
            values = {**values, "width": result.width, "height": result.height, "colourfulness": _colourfulness(result)}
        result = encode(result, fmt, provenance)
    elif provenance is not None:  # JPEG bytes from the device encoder: labelled by inserting segments
        result = label_output(result, "JPEG", provenance)
    try:
        result, credentials = signed(result, fmt.pil_format, facts.origin, signer)
    except Exception as exc:  # noqa: BLE001 - nothing written unsigned that was to be signed: the next run tries again
        return make_row(facts.obj, model_id, run_id, status="failed", error=not_signed(exc), permanent=False, read_s=facts.read_s)
    if credentials is not None:
        values = {**values, "credentials": credentials}
    try:
        out.write(out_key, result)
    except InvalidKeyError as exc:
        return make_row(facts.obj, model_id, run_id, status="failed", error=unstorable(exc), permanent=exc.permanent, read_s=facts.read_s)
    # encode and write: the device's share of the batch encode (if any) plus this thread's work
    values = {**values, "encode_s": values.get("encode_s", 0.0) + time.perf_counter() - t0}
    return make_row(
        facts.obj, model_id, run_id, status="ok", output_key=out_key, read_s=facts.read_s, decode_s=facts.decode_s, **values, **colour_values(facts)
    )


def _colourfulness(img: ColorImage) -> float:
    """`image_colourfulness` (0..255 units), of an 8-bit sample for a 16-bit image."""
    return image_colourfulness(img.preview(REDUCED_PIXELS) if isinstance(img, Image16) else img)
