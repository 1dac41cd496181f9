"""The black-and-white-or-colour decision (colorize_core/monochrome/) on prints and scenes this
test makes: every kind of toned and aged print is black-and-white, muted colour scenes with one
dominant hue are colour. Its figures on real photos are bench/monochrome_eval.py's (QUALITY.md)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bench.aged_prints import TONES, age_print, smooth_field, yuv_to_rgb8
from colorize_core.monochrome import MonochromeThresholds, judge

MARKS = ("fade", "yellowing", "foxing", "stain", "vignette", "hand-tint", "margin", "scanner-noise")


def scene_luma(rng: np.random.Generator, h: int = 150, w: int = 200) -> np.ndarray:
    """A photo's brightness: smooth shapes at several scales, some texture."""
    y = 0.45 * smooth_field((h, w), rng, cells=3) + 0.35 * smooth_field((h, w), rng, cells=9) + 0.1 * smooth_field((h, w), rng, cells=25)
    return np.clip(0.1 + y + rng.normal(0, 0.015, (h, w)), 0.0, 1.0).astype(np.float32)


def muted_colour_scene(rng: np.random.Generator, hue: float, chroma: float = 0.035, objects: int = 4) -> np.ndarray:
    """A colour photo whose colour is mostly one muted hue (sand, fog, dusk, water), with a few
    objects in other hues at the same brightness as the rest (a coat, leaves, a boat)."""
    y = scene_luma(rng)
    h, w = y.shape
    c, s = np.cos(np.radians(hue)), np.sin(np.radians(hue))
    u = np.full((h, w), chroma * c, np.float32) * (0.7 + 0.6 * smooth_field((h, w), rng))
    v = np.full((h, w), chroma * s, np.float32) * (0.7 + 0.6 * smooth_field((h, w), rng))
    yy, xx = np.mgrid[0:h, 0:w]
    for k in range(objects):
        oh = hue + 90 + 180 * k / objects + rng.uniform(-20, 20)
        cy, cx = rng.uniform(0.15, 0.85) * h, rng.uniform(0.15, 0.85) * w
        inside = ((yy - cy) / (0.14 * h)) ** 2 + ((xx - cx) / (0.1 * w)) ** 2 < 1
        strength = rng.uniform(0.07, 0.11)
        u[inside] = strength * np.cos(np.radians(oh))
        v[inside] = strength * np.sin(np.radians(oh))
    return yuv_to_rgb8(y, u, v)


def gray_scene(rng: np.random.Generator) -> np.ndarray:
    g = (scene_luma(rng) * 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


@pytest.mark.parametrize("tone", sorted(TONES))
def test_every_tone_is_black_and_white(tone: str) -> None:
    rng = np.random.default_rng(abs(hash(tone)) % 2**32)
    for _ in range(3):
        scene = muted_colour_scene(rng, rng.uniform(0, 360))  # the print keeps only its brightness
        aged = age_print(scene, rng, tone=tone, marks=(), jpeg=False)
        verdict = judge(Image.fromarray(aged.rgb))
        assert verdict.monochrome, f"{tone}: {verdict.reason}"


@pytest.mark.parametrize("mark", MARKS)
def test_every_kind_of_aging_is_black_and_white(mark: str) -> None:
    rng = np.random.default_rng(MARKS.index(mark))
    for tone in ("sepia", "cyanotype", "neutral", "pink-postcard"):
        aged = age_print(muted_colour_scene(rng, 140.0), rng, tone=tone, marks=(mark,), jpeg=True)
        verdict = judge(Image.fromarray(aged.rgb))
        assert verdict.monochrome, f"{tone} + {mark}: {verdict.reason}"
        assert verdict.reason.startswith(("toned", "gray"))


def test_a_print_aged_every_way_at_once_is_black_and_white() -> None:
    rng = np.random.default_rng(7)
    for tone in ("sepia", "warm", "cyanotype"):
        aged = age_print(muted_colour_scene(rng, 60.0), rng, tone=tone, marks=MARKS, jpeg=True)
        verdict = judge(Image.fromarray(aged.rgb))
        assert verdict.monochrome, f"{tone} + everything: {verdict.reason}"


@pytest.mark.parametrize("hue", [20.0, 95.0, 140.0, 165.0, 230.0, 320.0])
def test_muted_colour_scenes_with_one_dominant_hue_are_colour(hue: str) -> None:
    rng = np.random.default_rng(int(hue))
    for _ in range(3):
        verdict = judge(Image.fromarray(muted_colour_scene(rng, hue)))
        assert not verdict.monochrome, f"hue {hue}: {verdict.reason}"
        assert verdict.reason.startswith("colour: ")


def test_a_gray_scan_is_gray_and_its_figures_are_reported() -> None:
    verdict = judge(Image.fromarray(gray_scene(np.random.default_rng(3))))
    assert verdict.monochrome and verdict.reason.startswith("gray: ")
    assert verdict.evidence.mean_chroma < MonochromeThresholds.gray_chroma


def test_the_decision_does_not_depend_on_the_image_mode_or_size() -> None:
    rng = np.random.default_rng(11)
    aged = Image.fromarray(age_print(muted_colour_scene(rng, 140.0), rng, tone="sepia", marks=("yellowing",), jpeg=False).rgb)
    big = aged.resize((aged.width * 8, aged.height * 8), Image.Resampling.BICUBIC)
    for img in (aged, big, aged.convert("RGBA"), aged.convert("P", palette=Image.Palette.ADAPTIVE)):
        assert judge(img).monochrome
    assert judge(aged.convert("L")).reason.startswith("gray")
