import io

import numpy as np
import pytest
from PIL import Image

from colorize_core.storage.imageio import ImageDecodeError, decode, output_format_for, output_name_for
from tests.badfiles import png_bomb
from tests.conftest import png_bytes


def test_bad_inputs_raise_one_error_type_with_a_reason() -> None:
    good = png_bytes(Image.new("RGB", (20, 20), "red"))
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "blue").save(buf, format="JPEG")
    cases = {
        "empty": (b"", "empty"),
        "text": (b"hello, I am not a photo\n" * 10, "not an image"),
        "truncated jpeg": (buf.getvalue()[: len(buf.getvalue()) // 2], "truncated"),
        "bomb": (png_bomb(30000, 30000), "decompression bomb"),
    }
    for name, (data, reason) in cases.items():
        with pytest.raises(ImageDecodeError, match=reason):
            decode(data, name=name)
    assert decode(good).size == (20, 20)
    with pytest.raises(ImageDecodeError, match="over the limit"):
        decode(png_bomb(5000, 5000), max_pixels=1_000_000)  # refused from the header alone


def test_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("L", (10, 10), v) for v in (10, 200)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    img = decode(buf.getvalue())
    assert np.asarray(img.convert("L")).mean() == pytest.approx(10, abs=1)


def test_jpeg_draft_decodes_smaller_but_not_below_the_target() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (800, 600), "green").save(buf, format="JPEG")
    img = decode(buf.getvalue(), draft_size=(150, 150))
    assert img.size == (200, 150)


def test_output_formats() -> None:
    assert output_format_for("a.JPG").pil_format == "JPEG"
    assert output_name_for("dir/a.gif") == "dir/a.png"
    assert output_name_for("b.tiff") == "b.tiff"
    assert output_name_for("c.weird") == "c.png"
