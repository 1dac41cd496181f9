"""The gallery page, opened in a real browser (headless Chromium): its embedded images load."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from colorize_core.archive.gallery import gallery_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# In CI a missing browser is a failure (.ci/run installs it); elsewhere the test is skipped.
needs_browser = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"), reason="chromium not installed")


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@needs_browser
def test_gallery_shows_before_and_after_images(tmp_path: Path) -> None:
    assert CHROMIUM, "chromium is required in CI"
    before = _png(Image.new("L", (120, 90), 128))
    after = _png(Image.new("RGB", (120, 90), (220, 20, 20)))
    page = tmp_path / "gallery.html"
    page.write_text(gallery_html([("box 1/photo é.png", before, after)], "Colorized <test>"))
    shot = tmp_path / "shot.png"
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=900,700", f"--screenshot={shot}", page.as_uri()],
        check=True, capture_output=True, timeout=120, cwd=tmp_path,
    )
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    red = (pixels[..., 0] > 180) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    mid_gray = (np.abs(pixels - 128).max(axis=-1) < 12)
    assert red.sum() > 5000  # the "after" thumbnail rendered (about 256x192 px of it)
    assert mid_gray.sum() > 5000  # and the "before" one
    assert "Colorized &lt;test&gt;" in page.read_text()  # titles and names are escaped
