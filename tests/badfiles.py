"""A corpus of awkward and broken image files, made on the fly, with what each must become."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from tests.conftest import make_photo


def _save(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height over a few bytes of data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def bad_corpus() -> dict[str, tuple[bytes, str]]:
    """key -> (bytes, expected outcome: "ok", "skipped" or "failed")."""
    rng = np.random.default_rng(5)
    photo = make_photo(rng, 48, 64)
    jpeg = _save(photo, "JPEG", quality=90)
    rgba = photo.copy()
    rgba.putalpha(128)
    p_trans = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    exif = Image.Exif()
    exif[0x0112] = 8
    frames = [make_photo(rng, 32, 32), make_photo(rng, 32, 32)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    strip = make_photo(rng, 5000, 1)  # 1 wide, 5000 tall
    gray16 = Image.fromarray((rng.integers(0, 65536, (40, 40))).astype(np.uint16))
    # Photo-sized: the black-and-white-or-colour decision is trained on photos of 128 px and more
    # (a 64 x 48 sepia scores just under its threshold; QUALITY.md).
    toned = make_photo(rng, 150, 200).convert("L")
    return {
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "failed"),
        "zero.jpg": (b"", "failed"),
        "text.jpg": (b"this is a text file, not a photograph\n" * 20, "failed"),
        "bomb.png": (png_bomb(40000, 40000), "failed"),
        "cmyk.jpg": (_save(photo.convert("CMYK"), "JPEG"), "ok"),
        "gray16.png": (_save(gray16, "PNG"), "skipped"),
        "palette transparent.png": (_save(p_trans, "PNG", transparency=0), "ok"),
        "gray alpha.png": (_save(photo.convert("LA"), "PNG"), "skipped"),
        "rgba.png": (_save(rgba, "PNG"), "ok"),
        "rotated.jpg": (_save(photo, "JPEG", exif=exif), "ok"),
        "animated.gif": (gif.getvalue(), "ok"),
        "one pixel.png": (_save(Image.new("RGB", (1, 1), (200, 30, 30)), "PNG"), "ok"),  # saturated red: colour
        "strip 1x5000.png": (_save(strip, "PNG"), "ok"),
        "sub dir/Ünïcödé naïve café.jpg": (jpeg, "ok"),
        "sepia.jpg": (_save(Image.merge("RGB", [toned.point(lambda v: min(255, int(v * k))) for k in (1.0, 0.85, 0.65)]), "JPEG", quality=95), "skipped"),
    }
