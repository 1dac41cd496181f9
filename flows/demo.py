"""The demo on embedded defaults, as one Prefect pipeline with no service to run: sample photos
shipped inside scikit-image become a colour archive and a grayscale archive in a local folder;
a dataset is built from the colour one; a toy model trains on the CPU for about a minute; the
grayscale archive is colorized; outputs, Parquet metadata and a gallery page land in the folder.
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


@dataclass(frozen=True)
class DemoLayout:
    root: Path

    @property
    def photos(self) -> Path:
        return self.root / "photos"

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


def sample_photo_paths() -> list[Path]:
    """The bundled sample photos that exist in the installed scikit-image."""
    import skimage

    data_dir = Path(skimage.__file__).parent / "data"
    found = [data_dir / name for name in SAMPLE_PHOTOS if (data_dir / name).is_file()]
    if not found:
        raise FileNotFoundError(f"no sample photos found in {data_dir}; is scikit-image installed?")
    return found


@task
def make_archives(root: str) -> int:
    """Copy sample photos into photos/ and write their gray versions into gray/."""
    layout = DemoLayout(Path(root))
    layout.photos.mkdir(parents=True, exist_ok=True)
    layout.gray.mkdir(parents=True, exist_ok=True)
    for src in sample_photo_paths():
        shutil.copyfile(src, layout.photos / src.name)
        with Image.open(src) as img:
            img.convert("L").save(layout.gray / src.name)
    return len(sample_photo_paths())


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
    report = evaluate_task(str(layout.photos), str(layout.checkpoint))
    result = {"photos": photos, "dataset": dataset, "trained": trained, "colorized": colorized, "eval": report}
    (layout.root / "demo-summary.json").write_text(json.dumps(result, indent=2, default=str))
    return result
