"""Image decoding and encoding that fails cleanly: every bad input raises `ImageDecodeError`.

Decoding reads the header first and refuses decompression bombs before any pixel is allocated,
applies EXIF orientation, takes the first frame of animations, and (for JPEG) can decode at a
reduced size with Pillow's `draft` when the caller will downscale anyway.

16-bit sources (gray modes I;16, I;16B, I; RGB(A) TIFFs and PNGs with 16 bits a sample, which
Pillow reads cut to 8 bits and deep.py reads again whole) colorize to an `Image16`
(deep.py), which `encode` writes as a 16-bit RGB(A) TIFF or PNG.
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from colorize_core.bt601 import KB, KG, KR
from colorize_core.storage import deep
from colorize_core.storage.deep import RGB16_INFO, Image16, encode_png16, encode_tiff16
from colorize_core.storage.provenance import Provenance, label_output, save_options, source_exif

log = logging.getLogger(__name__)

# Large archival scans reach ~100 MP (A3 at 600 dpi is ~70 MP); beyond this a file is refused.
MAX_PIXELS = 180_000_000
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp"})
# Pillow's 16-bit gray modes ("I": 32-bit integers, as older Pillow opens 16-bit PNGs and some
# scanners write gray TIFFs; values over 65535 are clipped, as `luma_plane` does).
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


class ImageDecodeError(ValueError):
    """An input that is not a usable image; `reason` says why in words a user can act on, and
    `permanent` whether it is the file's fault (False: retrying the same bytes may pass)."""

    def __init__(self, name: str, reason: str, *, permanent: bool = True) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason
        self.permanent = permanent


# What Pillow raises for bad bytes (a broken header, truncated or corrupt data): the file's
# fault. Anything else it raises is not assumed to be, and MemoryError is the machine's.
_DATA_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError, KeyError)


def _pillow_error(name: str, exc: Exception, what: str) -> ImageDecodeError:
    """An exception from Pillow reading `name` as an ImageDecodeError that says whose fault it is."""
    if isinstance(exc, MemoryError):
        return ImageDecodeError(name, "not enough memory to decode it", permanent=False)
    if isinstance(exc, _DATA_ERRORS):
        return ImageDecodeError(name, f"{what}: {exc}")
    return ImageDecodeError(name, f"could not be decoded ({type(exc).__name__}: {exc})", permanent=False)


def decode(
    data: bytes,
    *,
    name: str = "<bytes>",
    max_pixels: int = MAX_PIXELS,
    draft_size: tuple[int, int] | None = None,
    keep_exif: bool = False,
) -> Image.Image:
    """Bytes -> a loaded, upright PIL image (first frame), or `ImageDecodeError`.
    `keep_exif`: put the source's EXIF in `img.info["source_exif"]` (bytes or None) for a
    labelled output to keep; only writers of outputs ask (training decodes skip the work)."""
    if not data:
        raise ImageDecodeError(name, "empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))  # lazy: parses the header only
    except UnidentifiedImageError:
        raise ImageDecodeError(name, "not an image, or a format this tool cannot read") from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(name, f"refused as a decompression bomb: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for broken headers
        raise _pillow_error(name, exc, "unreadable header") from None
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageDecodeError(name, f"invalid size {w}x{h}")
    if w * h > max_pixels:
        raise ImageDecodeError(name, f"claims {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,}")
    orientation = img.getexif().get(0x0112, 1)
    exif = source_exif(img) if keep_exif else None  # now, while a TIFF's tags can still be read
    full_size = (h, w) if orientation in (5, 6, 7, 8) else (w, h)  # as displayed, before any draft
    if draft_size is not None and img.format == "JPEG":
        # Decode at 1/2, 1/4 or 1/8 scale (DCT scaling) while staying >= draft_size: far faster.
        img.draft(img.mode if img.mode in ("L", "RGB") else None, draft_size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img.load()
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(name, f"refused as a decompression bomb: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - truncated/corrupt data surfaces as OSError, SyntaxError, ...
        raise _pillow_error(name, exc, "corrupt or truncated image data") from None
    try:
        rgb16 = deep.rgb16_pixels(img, data, name)  # our own code: any other error of it propagates, a bug
    except MemoryError:
        raise ImageDecodeError(name, "not enough memory to decode it", permanent=False) from None
    try:
        img = ImageOps.exif_transpose(img)
    except Exception as exc:  # noqa: BLE001 - a broken EXIF block surfaces as many types
        raise _pillow_error(name, exc, "unreadable orientation") from None
    if rgb16 is not None:
        # Pillow turns a TIFF upright while loading it (newer versions) or in exif_transpose:
        # either way, the stored pixels read again turn by the orientation read before.
        rgb16 = deep.upright(rgb16, orientation)
        if rgb16.shape[:2] == (img.height, img.width):
            img.info[RGB16_INFO] = rgb16
        else:
            log.warning("%s: 16-bit RGB source read with 8 bits a sample (orientation %s: %s vs %s)", name, orientation, rgb16.shape, img.size)
    img.info["source_size"] = full_size
    if keep_exif:
        img.info["source_exif"] = exif
    return img


def source_size(img: Image.Image) -> tuple[int, int]:
    """The decoded source's full, upright size, even when `draft` decoded it smaller."""
    return tuple(img.info.get("source_size", img.size))  # type: ignore[return-value]


def read_file(path: str | Path) -> bytes:
    """A local image file's bytes; a missing or unreadable file is an `ImageDecodeError`."""
    p = Path(path)
    try:
        return p.read_bytes()
    except OSError as exc:
        raise ImageDecodeError(str(p), f"cannot read file: {exc.strerror or exc}", permanent=False) from None


def read_image(path: str | Path, **kwargs: object) -> Image.Image:
    """Decode a local file; a missing or unreadable file is an `ImageDecodeError` too."""
    return decode(read_file(path), name=str(path), **kwargs)  # type: ignore[arg-type]


def has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info)


def luma_plane(img: Image.Image) -> tuple[np.ndarray, Image.Image | None]:
    """Any mode -> (luma (H, W) at the source's own precision, alpha band as mode "L" or None).

    The luma is uint8 (8-bit modes: read as 0..255), uint16 (16-bit modes: 0..65535) or float32
    (float and colour modes: already in [0, 1]); `unit_luma` turns any of them into float32 in
    [0, 1]. A gray scan thus costs 1 byte a pixel here, not the 4 of a float32 copy, and the
    colorizer converts it to float a strip of rows at a time. Colour modes use BT.601 weights on
    float RGB, row by row, so no float copy of the three channels is ever made.
    """
    alpha = None
    if has_alpha(img):
        rgba = img.convert("RGBA") if img.mode in ("P", "PA", "RGBa") else img
        alpha = rgba.getchannel("A")
        img = rgba.convert("LA" if rgba.mode in ("LA", "La") else "RGB")
    mode = img.mode
    if mode.startswith("I;16"):
        return np.array(img).astype(np.uint16, copy=False), alpha  # native byte order
    if mode == "I":  # 16-bit PNGs open as "I" in older Pillow; values are 0..65535
        return np.clip(np.asarray(img), 0, 65535).astype(np.uint16), alpha
    if mode == "F":
        arr = np.array(img, dtype=np.float32)
        y = arr / 255.0 if arr.size and float(arr.max()) > 1.0 else arr
        return np.clip(y, 0.0, 1.0, out=y), alpha
    if mode in ("L", "LA", "La", "1"):
        return np.array(img if mode == "L" else img.convert("L")), alpha
    rgb = np.asarray(img if mode == "RGB" else img.convert("RGB"))
    y = np.empty(rgb.shape[:2], dtype=np.float32)
    rows = max(1, (1 << 20) // max(1, rgb.shape[1]))  # ~1 MP at a time
    for r in range(0, rgb.shape[0], rows):
        f = rgb[r : r + rows].astype(np.float32) / 255.0
        y[r : r + rows] = np.clip(f[..., 0] * KR + f[..., 1] * KG + f[..., 2] * KB, 0.0, 1.0)
    return y, alpha


def is_sixteen_bit(img: Image.Image) -> bool:
    """Whether a decoded image holds more than 8 bits a sample: its output can keep them."""
    return img.mode in SIXTEEN_BIT_MODES or RGB16_INFO in img.info


def luma_plane16(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """A 16-bit source (`is_sixteen_bit`) -> (uint16 luma (H, W), uint16 alpha (H, W) or None).
    RGB(A) at 16 bits: BT.601 weights in float32, a strip of rows at a time, rounded to uint16."""
    rgb16 = img.info.get(RGB16_INFO)
    if rgb16 is None:
        y, _ = luma_plane(img)  # Pillow's 16-bit modes are gray without alpha
        if y.dtype != np.uint16:
            raise ValueError(f"not a 16-bit image: mode {img.mode}")
        return y, None
    y = np.empty(rgb16.shape[:2], dtype=np.uint16)
    rows = max(1, (1 << 20) // max(1, rgb16.shape[1]))
    for r in range(0, rgb16.shape[0], rows):
        f = rgb16[r : r + rows].astype(np.float32)
        y[r : r + rows] = np.clip(np.rint(f[..., 0] * KR + f[..., 1] * KG + f[..., 2] * KB), 0, 65535)
    return y, (rgb16[..., 3].copy() if rgb16.shape[2] == 4 else None)


def unit_luma(y: np.ndarray) -> np.ndarray:
    """A `luma_plane` luma -> float32 in [0, 1]: uint8 / 255, uint16 / 65535, float32 as it is."""
    if np.issubdtype(y.dtype, np.integer):
        return y.astype(np.float32) / np.float32(np.iinfo(y.dtype).max)
    return y.astype(np.float32, copy=False)


def luma_and_alpha(img: Image.Image) -> tuple[np.ndarray, Image.Image | None]:
    """Any mode -> (luma float32 (H, W) in [0, 1], alpha band as mode "L" or None).

    16-bit and float modes keep their precision; colour modes use BT.601 weights on float RGB.
    For huge scans prefer `luma_plane`, which keeps 8- and 16-bit luma as integers.
    """
    y, alpha = luma_plane(img)
    return unit_luma(y), alpha


def to_rgb_array(img: Image.Image) -> np.ndarray:
    """Any mode -> uint8 (H, W, 3); 16-bit gray is scaled, not clipped."""
    if img.mode.startswith("I") or img.mode == "F":
        y, _ = luma_and_alpha(img)
        g = np.round(y * 255.0).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


ColorImage = Image.Image | Image16  # what `Colorizer.colorize_keeping_depth` gives and `encode` takes


@dataclass(frozen=True)
class OutputFormat:
    pil_format: str
    suffix: str
    keeps_alpha: bool
    options: dict[str, object]


JPEG_QUALITY = 95  # colorized JPEGs, by Pillow here and by nvJPEG / libjpeg-turbo (jpeg_codec.py)

_FORMATS = {
    ".jpg": OutputFormat("JPEG", ".jpg", False, {"quality": JPEG_QUALITY, "subsampling": 0}),
    ".jpeg": OutputFormat("JPEG", ".jpeg", False, {"quality": JPEG_QUALITY, "subsampling": 0}),
    ".png": OutputFormat("PNG", ".png", True, {}),
    ".tif": OutputFormat("TIFF", ".tif", True, {"compression": "tiff_deflate"}),
    ".tiff": OutputFormat("TIFF", ".tiff", True, {"compression": "tiff_deflate"}),
    ".webp": OutputFormat("WEBP", ".webp", True, {"lossless": True}),
    ".bmp": OutputFormat("BMP", ".bmp", False, {}),
}


def output_format_for(name: str) -> OutputFormat:
    """The format family of an output for an input name; GIF's 256-colour palette cannot hold a
    colorized photo, so GIFs (and unknown suffixes) become PNG."""
    return _FORMATS.get(Path(name).suffix.lower(), _FORMATS[".png"])


def output_name_for(name: str) -> str:
    """Same name, with the suffix changed only when the format family had to change."""
    fmt = output_format_for(name)
    p = Path(name)
    return name if p.suffix.lower() == fmt.suffix else str(p.with_suffix(fmt.suffix))


def encode(img: ColorImage, fmt: OutputFormat, provenance: Provenance | None = None) -> bytes:
    """Encode to bytes in `fmt`, dropping alpha only where the format cannot hold it; with
    `provenance`, labelled as a trained model's output (provenance.py: at encode time where
    Pillow can, by inserting metadata into the encoded bytes where it cannot). An `Image16`
    becomes a 16-bit TIFF or PNG, or an 8-bit image in the formats that hold only 8 bits."""
    if isinstance(img, Image16):
        if fmt.pil_format == "TIFF":
            return encode_tiff16(img, provenance)
        if fmt.pil_format == "PNG":
            return encode_png16(img, provenance)
        img = img.to_8bit()
    if not fmt.keeps_alpha and img.mode == "RGBA":
        img = img.convert("RGB")
    options = fmt.options if provenance is None else {**fmt.options, **save_options(fmt.pil_format, provenance, img.size)}
    buf = io.BytesIO()
    img.save(buf, format=fmt.pil_format, **options)
    return buf.getvalue() if provenance is None else label_output(buf.getvalue(), fmt.pil_format, provenance)
