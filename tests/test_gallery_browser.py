"""The gallery page, opened in a real browser (headless Chromium): its embedded images load, its
columns fit a 1280 px window with long names, and names from the archive show as text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from colorize_core.archive.gallery import HTML_NAME_CHARS, GalleryRun, gallery_html
from colorize_core.archive.markup import shorten_middle
from tests.browser import Browser, needs_browser
from tests.conftest import png_bytes

LONG = "box 4/" + "a_very_long_folder_name_from_the_scanning_bureau_" * 3 + "/photo_with_a_long_descriptive_name_0001.png"
NASTY = "box 1/x` | <script>window.XSS=1</script> <img src=x onerror=window.XSS=2> \"é'.png"


@needs_browser
@pytest.mark.slow  # a browser start: make test only
def test_gallery_shows_before_and_after_images_within_1280px(tmp_path: Path) -> None:
    before = png_bytes(Image.new("L", (480, 360), 128))
    after = png_bytes(Image.new("RGB", (480, 360), (220, 20, 20)))
    run = GalleryRun(run_id="20260101T020000-abcdef12", dest="/archive/<out>", message="3 ok, 1 failed", failed=1, flow_run_name="brave-otter", shards=2, new_photos=3)
    page = tmp_path / "gallery.html"
    page.write_text(gallery_html([(LONG, before, after), (NASTY, before, after), ("box 2/short.png", before, after)], run), encoding="utf-8")
    with Browser(1280, 1000) as b:
        b.goto(page.as_uri())
        b.wait_for("document.images.length === 6 && Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)", "the thumbnails")
        seen = b.eval(
            """(() => ({
              rights: Array.from(document.images).map(i => i.getBoundingClientRect().right),
              rows: Array.from(document.querySelectorAll('tr')).map(r => r.children.length),
              names: Array.from(document.querySelectorAll('td.name')).map(td => [td.title, td.innerText]),
              scripts: document.querySelectorAll('body script').length, xss: window.XSS || null,
              h1: document.querySelectorAll('h1').length, text: document.body.innerText}))()"""
        )
        shot = b.screenshot(tmp_path / "shot.png")
    assert max(seen["rights"]) <= 1280  # the "after" column is on screen, long names and all
    assert seen["rows"] == [3, 3, 3, 3] and seen["scripts"] == 0 and seen["xss"] is None
    assert [title for title, _ in seen["names"]] == [LONG, NASTY, "box 2/short.png"]  # full names on hover
    assert [shown for _, shown in seen["names"]] == [shorten_middle(k, HTML_NAME_CHARS) for k in (LONG, NASTY, "box 2/short.png")]  # as typed
    assert seen["h1"] == 1 and "1 photo failed" in seen["text"] and "colorize status /archive/<out>" in seen["text"]
    assert "brave-otter" in seen["text"] and "20260101T020000-abcdef12" in seen["text"]

    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    red = (pixels[..., 0] > 180) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    mid_gray = np.abs(pixels - 128).max(axis=-1) < 12
    assert red.sum() > 20000  # the "after" thumbnails rendered
    assert mid_gray.sum() > 20000  # and the "before" ones
