"""The demo on embedded defaults, as one Prefect pipeline with no service to run: sample photos
shipped inside scikit-image become a colour archive and a grayscale archive in a local folder;
a dataset is built from the colour photos except two held out; a toy model trains on the CPU
for about a minute; the grayscale archive is colorized; the model is scored on the two photos
it never saw; outputs, Parquet metadata and a gallery page land in the folder. Each demo starts
afresh: it removes what a previous demo wrote there (and only that).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from prefect import flow, task

from colorize_core.evaluate import evaluate
from colorize_core.model.backbone import imagenet_weights_path
from colorize_core.model.infer import Colorizer
from colorize_core.storage.files import bundled_photos
from flows.build_dataset import build_dataset_flow
from flows.colorize_archive import colorize_archive
from flows.train_model import train_model

log = logging.getLogger(__name__)

# Colour photographs bundled in scikit-image's wheel (no download): its `data` folder.
SAMPLE_PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "hubble_deep_field.jpg",
    "ihc.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "retina.jpg",
)
# Scored, never trained on. Not one of the two motorcycle views: they show the same scene.
HELD_OUT = ("chelsea.png", "coffee.png")


@dataclass(frozen=True)
class DemoLayout:
    root: Path

    @property
    def photos(self) -> Path:
        return self.root / "photos"

    @property
    def held_out(self) -> Path:
        return self.root / "held-out"

    @property
    def gray(self) -> Path:
        return self.root / "gray"

    @property
    def dataset(self) -> Path:
        return self.root / "dataset"

    @property
    def colorized(self) -> Path:
        return self.root / "colorized"

    @property
    def checkpoint(self) -> Path:
        return self.root / "model.safetensors"

    @property
    def registry(self) -> Path:
        return self.root / "registry"

    @property
    def summary(self) -> Path:
        return self.root / "demo-summary.json"

    @property
    def marker(self) -> Path:
        """Written first by every demo: only a folder that has it holds a demo's outputs."""
        return self.root / ".colorize-demo"

    def previous(self) -> list[Path]:
        """What a demo writes here that exists now (triptychs and the int8 model cache sit
        beside the checkpoint), the marker last."""
        val = self.checkpoint.with_name(self.checkpoint.stem + "_val")
        cache = self.root / ".colorize-cache"
        paths = (self.photos, self.held_out, self.gray, self.dataset, self.colorized, self.checkpoint, val, cache, self.registry, self.summary, self.marker)
        return [p for p in paths if p.exists()]


def sample_photo_paths() -> list[Path]:
    """The bundled sample photos that exist in the installed scikit-image."""
    found = bundled_photos(SAMPLE_PHOTOS)
    if not found:
        raise FileNotFoundError("no sample photos found in scikit-image's data folder; is scikit-image installed?")
    return found


class NotADemoFolder(RuntimeError):
    """--out holds things of the demo's names that no demo wrote: they are not the demo's to remove."""


def clear_previous(layout: DemoLayout) -> list[Path]:
    """Remove an earlier demo's outputs, so this one trains and scores afresh; returns them.
    Only in a folder a demo marked: anywhere else, paths of the demo's names are someone's data."""
    removed = layout.previous()
    # demo-summary.json: what demos wrote last before the marker existed.
    if removed and not (layout.marker.is_file() or layout.summary.is_file()):
        names = ", ".join(p.name for p in removed)
        raise NotADemoFolder(f"{layout.root} already has {names}, not written by a demo: pass another --out (an empty or new folder)")
    for path in removed:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return removed


@task
def make_archives(root: str) -> int:
    """Copy sample photos into photos/ (training) and held-out/ (scoring), and write gray
    versions of all of them into gray/ (the archive to colorize)."""
    layout = DemoLayout(Path(root))
    for folder in (layout.photos, layout.held_out, layout.gray):
        folder.mkdir(parents=True, exist_ok=True)
    found = sample_photo_paths()
    for src in found:
        shutil.copyfile(src, (layout.held_out if src.name in HELD_OUT else layout.photos) / src.name)
        with Image.open(src) as img:
            img.convert("L").save(layout.gray / src.name)
    return len(found)


def default_backbone() -> str:
    """ImageNet VGG16 when torchvision's cache has it (real features), else random weights."""
    if imagenet_weights_path().is_file():
        return "imagenet"
    log.warning("VGG16 ImageNet weights not in %s: the demo trains on a random backbone (a toy result)", imagenet_weights_path())
    return "none"


@task
def evaluate_task(photos: str, checkpoint: str) -> dict[str, Any]:
    return evaluate(photos, Colorizer.from_checkpoint(checkpoint, device="cpu")).to_dict()


@flow(name="demo", log_prints=True)
def demo(out: str = "demo-output", seconds: float = 60.0, image_size: int = 64, device: str = "cpu") -> dict[str, Any]:
    """The whole pipeline on bundled photos, in a local folder."""
    layout = DemoLayout(Path(out).resolve())
    removed = clear_previous(layout)
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.marker.write_text("a folder `colorize demo` writes and removes again at its next run\n")
    if removed:
        print(f"demo: starting afresh: removed the previous demo's {', '.join(p.name for p in removed if p != layout.marker)} in {layout.root}")
    photos = make_archives(str(layout.root))
    dataset = build_dataset_flow(str(layout.photos), str(layout.dataset), size=2 * image_size, shard_size=4)
    trained = train_model(
        str(layout.dataset),
        str(layout.checkpoint),
        steps=100_000,  # bounded by max_seconds
        image_size=image_size,
        batch_size=8,
        backbone_weights=default_backbone(),
        # Adam learns something in the minute a demo has; the seed's SGD needs days (README).
        optimizer="adam",
        lr=1e-3,
        device=device,
        max_seconds=seconds,
        registry=str(layout.registry),
    )
    colorized = colorize_archive(str(layout.gray), str(layout.colorized), checkpoint="latest", device=device, registry=str(layout.registry))
    report = evaluate_task(str(layout.held_out), str(layout.checkpoint))
    result = {"photos": photos, "held_out": list(HELD_OUT), "dataset": dataset.to_dict(), "trained": trained, "colorized": colorized.to_dict(), "eval": report}
    layout.summary.write_text(json.dumps(result, indent=2, default=str))
    return result
