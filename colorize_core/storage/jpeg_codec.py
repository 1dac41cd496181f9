"""JPEG straight to and from tensors on the inference device: nvJPEG on CUDA, libjpeg-turbo on CPU.

On a GPU, decoding JPEGs with Pillow on a few CPU threads caps an archive run at a few hundred
images/s while the model could do thousands; nvJPEG decodes a whole batch in one call and the
pixels never cross PCIe uncompressed. The archive pipeline uses this for plain JPEGs (8-bit gray
or YCbCr, a complete file, within the pixel limit) and sends everything else, and anything this
path fails on, through Pillow (`imageio.decode`), which gives the reasons users read.

This is the only file that touches `torchvision.io`'s image codecs (deprecated in torchvision
0.29 in favour of TorchCodec, whose image API has no batched encode or EXIF orientation as of
0.17): moving to TorchCodec is a change here only.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import torch
from PIL import Image

from colorize_core.storage.imageio import JPEG_QUALITY, MAX_PIXELS

# The colorized JPEGs' quality is the Pillow path's (JPEG_QUALITY). nvJPEG and libjpeg-turbo here
# use 4:2:0 chroma subsampling, which costs nothing visible: the chroma is predicted at 224 px anyway.
_SOI = b"\xff\xd8\xff"
_EOI = b"\xff\xd9"


@dataclass(frozen=True)
class JpegHeader:
    """What the header says, read without decoding a pixel."""

    width: int
    height: int
    gray: bool  # one component: the file holds luma only
    orientation: int  # EXIF orientation, 1..8 (1 = upright)


def probe_jpeg(data: bytes, max_pixels: int = MAX_PIXELS) -> JpegHeader | None:
    """The header of a JPEG this path can take, or None: the caller then uses Pillow.

    Refuses (None) anything but a complete 8-bit gray or YCbCr/RGB JPEG within `max_pixels`:
    CMYK, truncated files (no end marker: nvJPEG may fill the rest with gray instead of
    failing), 12-bit, and unreadable headers all take the Pillow path and its error messages.
    """
    if not data.startswith(_SOI) or _EOI not in data[-64:]:
        return None  # trailing bytes after the end marker are common; a missing marker is not
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))  # lazy: parses the header only
            if img.format != "JPEG" or img.mode not in ("L", "RGB") or img.width * img.height > max_pixels:
                return None
            orientation = int(img.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - any header Pillow dislikes goes to Pillow's decode for its reason
        return None
    if img.width <= 0 or img.height <= 0:
        return None
    return JpegHeader(img.width, img.height, img.mode == "L", orientation if 1 <= orientation <= 8 else 1)


def _torchvision_io():  # type: ignore[no-untyped-def]
    from torchvision import io as tvio

    return tvio


def decode_jpegs(blobs: list[bytes], *, gray: bool, device: torch.device) -> list[torch.Tensor | None]:
    """Decode a batch to uint8 (C, H, W) tensors on `device` (C = 1 if `gray`, else 3).

    One call for the batch (what makes nvJPEG fast); if it fails, each file is decoded alone and
    the ones that still fail come back as None for the caller to hand to Pillow. Any failure
    (a bad file, a torchvision built without nvJPEG) ends in Pillow: slower, never wrong."""
    try:
        tvio = _torchvision_io()
        mode = tvio.ImageReadMode.GRAY if gray else tvio.ImageReadMode.RGB
    except Exception:  # noqa: BLE001 - a torchvision without its image codecs (deprecated in 0.29)
        return [None] * len(blobs)
    tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return list(tvio.decode_jpeg(tensors, mode=mode, device=device))
        except Exception:  # noqa: BLE001 - one bad file fails the whole batch call: find it
            pass
        out: list[torch.Tensor | None] = []
        for t in tensors:
            try:
                out.append(tvio.decode_jpeg(t, mode=mode, device=device))
            except Exception:  # noqa: BLE001 - whatever the decoder says, Pillow gets the file
                out.append(None)
        return out


def orient(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """Apply an EXIF orientation (1..8) to a (C, H, W) tensor: the image as it is meant to be seen."""
    if orientation == 2:
        return image.flip(-1)
    if orientation == 3:
        return image.flip(-1, -2)
    if orientation == 4:
        return image.flip(-2)
    if orientation == 5:
        return image.transpose(-1, -2)
    if orientation == 6:
        return image.transpose(-1, -2).flip(-1)
    if orientation == 7:
        return image.transpose(-1, -2).flip(-1, -2)
    if orientation == 8:
        return image.transpose(-1, -2).flip(-2)
    return image


def encode_jpegs(images: list[torch.Tensor], quality: int = JPEG_QUALITY) -> list[bytes]:
    """uint8 RGB (3, H, W) tensors, on CPU or all on one GPU -> JPEG files, in one call."""
    tvio = _torchvision_io()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        encoded = tvio.encode_jpeg([img.contiguous() for img in images], quality=quality)
    return [t.cpu().numpy().tobytes() for t in encoded]
