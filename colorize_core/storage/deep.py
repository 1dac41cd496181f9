"""Colour at 16 bits a sample, which Pillow can neither hold nor write: `Image16` (what a 16-bit
source colorizes to), the readers of 16-bit RGB(A) TIFFs (tifffile) and PNGs (imagecodecs), whose
samples Pillow cuts to their high byte, and the 16-bit RGB(A) TIFF and PNG writers. imageio.py
decodes and encodes through them.
"""

from __future__ import annotations

import io
import logging
import math
import struct
import zlib
from dataclasses import dataclass

import imagecodecs
import numpy as np
import tifffile
from PIL import Image

from colorize_core.storage.provenance import Provenance, label_tiff_in_place, png_label_chunks

log = logging.getLogger(__name__)

# img.info key of a 16-bit RGB(A) source's own pixels, uint16 (H, W, 3 or 4), upright like the image.
RGB16_INFO = "rgb16_pixels"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def rgb16_pixels(img: Image.Image, data: bytes, name: str) -> np.ndarray | None:
    """A loaded image's own pixels as uint16 (H, W, 3 or 4), as stored (before any EXIF turn),
    when it is an RGB(A) TIFF or PNG at 16 bits a sample; else None. The file is read again by a
    reader that keeps 16 bits. One that Pillow reads but the other reader cannot is colorized
    from Pillow's 8 bits rather than failed: one line in the log."""
    if img.mode not in ("RGB", "RGBA"):
        return None
    if img.format == "TIFF":
        return _tiff_rgb16(img, data, name)
    if img.format == "PNG":
        return _png_rgb16(img, data, name)
    return None


def _png_rgb16(img: Image.Image, data: bytes, name: str) -> np.ndarray | None:
    # IHDR is the first chunk: width, height, bit depth (byte 24), colour type (25: 2 RGB, 6 RGBA).
    if len(data) < 26 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR" or data[24] != 16 or data[25] not in (2, 6):
        return None
    try:
        arr = imagecodecs.png_decode(data)  # libpng: every filter, interlacing, 16 bits kept
    except MemoryError:
        raise  # the machine's limit, not the file's: not a reason to fall back quietly
    except Exception as exc:  # noqa: BLE001 - libpng's errors surface as several types
        log.warning("%s: 16-bit RGB PNG read with 8 bits a sample (imagecodecs: %s)", name, exc)
        return None
    bands = len(img.getbands())
    stored = struct.unpack(">II", data[16:24])[::-1]  # IHDR's width, height: before any turn
    if arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[:2] != stored or arr.shape[2] < bands:
        log.warning("%s: 16-bit RGB PNG read with 8 bits a sample (imagecodecs gave %s %s)", name, arr.dtype, arr.shape)
        return None
    return np.ascontiguousarray(arr[..., :bands])


def _tiff_rgb16(img: Image.Image, data: bytes, name: str) -> np.ndarray | None:
    tags = getattr(img, "tag_v2", {})
    bits, sample_format = tags.get(258), tags.get(339, 1)
    if not isinstance(bits, tuple) or set(bits) != {16} or set(np.atleast_1d(sample_format)) != {1}:
        return None
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages[0]
            arr = page.asarray()
            if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE:
                arr = np.moveaxis(arr, 0, -1)
    except MemoryError:
        raise  # the machine's limit, not the file's: not a reason to fall back quietly
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types; Pillow's 8 bits still work
        log.warning("%s: 16-bit RGB TIFF read with 8 bits a sample (tifffile: %s)", name, exc)
        return None
    bands = len(img.getbands())
    stored = (tags.get(257), tags.get(256))  # ImageLength, ImageWidth: before any turn
    if arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[:2] != stored or arr.shape[2] < bands:
        log.warning("%s: 16-bit RGB TIFF read with 8 bits a sample (tifffile gave %s %s)", name, arr.dtype, arr.shape)
        return None
    return np.ascontiguousarray(arr[..., :bands])


def upright(arr: np.ndarray, orientation: int) -> np.ndarray:
    """(H, W, C) pixels turned as `ImageOps.exif_transpose` turns a PIL image for `orientation`."""
    turned = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
        8: lambda a: np.rot90(a, 1),
    }.get(orientation)
    return arr if turned is None else np.ascontiguousarray(turned(arr))


@dataclass(frozen=True, eq=False)
class Image16:
    """A colour image at 16 bits a channel: what a 16-bit source colorizes to. `pixels` is uint16
    (H, W, 3), or (H, W, 4) with alpha last."""

    pixels: np.ndarray

    def __post_init__(self) -> None:
        p = self.pixels
        if p.dtype != np.uint16 or p.ndim != 3 or p.shape[2] not in (3, 4):
            raise ValueError(f"Image16 needs uint16 (H, W, 3 or 4) pixels, got {p.dtype} {p.shape}")

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    @property
    def mode(self) -> str:
        """The mode of the 8-bit image it would be: "RGB" or "RGBA"."""
        return "RGBA" if self.pixels.shape[2] == 4 else "RGB"

    def to_8bit(self, rows: int = 1024) -> Image.Image:
        """The nearest 8-bit PIL image (v * 255 / 65535, rounded), for formats without 16 bits."""
        out = np.empty(self.pixels.shape, dtype=np.uint8)
        for r in range(0, self.height, rows):
            out[r : r + rows] = _to_8bit(self.pixels[r : r + rows])
        return Image.fromarray(out, self.mode)

    def preview(self, max_pixels: int) -> Image.Image:
        """An 8-bit RGB sample of at most about `max_pixels` pixels (nearest neighbour, evenly
        spaced), for statistics such as colourfulness without a full-size 8-bit copy."""
        scale = min(1.0, math.sqrt(max_pixels / max(1, self.width * self.height)))
        h, w = max(1, round(self.height * scale)), max(1, round(self.width * scale))
        rows = ((np.arange(h) + 0.5) * (self.height / h)).astype(np.intp)
        cols = ((np.arange(w) + 0.5) * (self.width / w)).astype(np.intp)
        return Image.fromarray(_to_8bit(self.pixels[rows][:, cols, :3]), "RGB")


def _to_8bit(p: np.ndarray) -> np.ndarray:
    return ((p.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


# Raw bytes a strip (TIFF) or a deflate call (PNG) covers: bounded memory for any image size.
_STRIP_BYTES = 1 << 20


def encode_tiff16(img: Image16, provenance: Provenance | None) -> bytes:
    """A 16-bit RGB(A) TIFF by tifffile: deflate with the horizontal predictor (what 16-bit scans
    compress well with), in strips of about 1 MB; labelled afterwards like Pillow's TIFFs."""
    h, w, c = img.pixels.shape
    buf = io.BytesIO()
    tifffile.imwrite(
        buf,
        img.pixels,
        photometric="rgb",
        extrasamples=("unassalpha",) if c == 4 else None,  # as Pillow writes RGBA
        compression="zlib",
        predictor=True,
        rowsperstrip=max(1, _STRIP_BYTES // (w * c * 2)),
        metadata=None,  # no tifffile JSON in ImageDescription
        software=False,  # the label names this tool; a bare output names none, as Pillow's
        bigtiff=False,  # the labeller appends to classic TIFFs; 180 MP x 8 B is far below 4 GB
    )
    if provenance is not None:
        label_tiff_in_place(buf, provenance)  # no second copy of a file of hundreds of MB
    return buf.getvalue()  # CPython hands over the buffer itself: no copy either


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(payload, zlib.crc32(kind)))


def encode_png16(img: Image16, provenance: Provenance | None) -> bytes:
    """A 16-bit RGB(A) PNG, written here: Pillow cannot, and the format is small (IHDR, the label
    chunks, IDAT, IEND). Each row is filtered with Sub (PNG filter 1: each byte less the byte one
    pixel to its left, modulo 256) and deflated a strip at a time, so the only full-size copy is
    the compressed one. Samples are big-endian, as PNG stores them."""
    h, w, c = img.pixels.shape
    bpp = 2 * c  # bytes a pixel
    parts = [_PNG_SIGNATURE, _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 6 if c == 4 else 2, 0, 0, 0))]
    if provenance is not None:
        parts += [_png_chunk(kind, payload) for kind, payload in png_label_chunks(provenance, img.size)]
    deflate = zlib.compressobj(6)  # Pillow's default level for PNG
    rows = max(1, _STRIP_BYTES // (w * bpp))
    for r in range(0, h, rows):
        raw = img.pixels[r : r + rows].astype(">u2").view(np.uint8).reshape(-1, w * bpp)
        filtered = np.empty((raw.shape[0], 1 + w * bpp), dtype=np.uint8)
        filtered[:, 0] = 1
        filtered[:, 1 : 1 + bpp] = raw[:, :bpp]
        np.subtract(raw[:, bpp:], raw[:, :-bpp], out=filtered[:, 1 + bpp :])  # uint8: wraps modulo 256
        if piece := deflate.compress(filtered):
            parts.append(_png_chunk(b"IDAT", piece))
    parts += [_png_chunk(b"IDAT", deflate.flush()), _png_chunk(b"IEND", b"")]
    return b"".join(parts)
