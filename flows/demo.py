"""The demo on embedded defaults: sample photos shipped inside scikit-image become a colour
archive and a gray archive in a local folder; a toy model trains on the colour photos for about
a minute on the CPU; the gray archive is colorized; the result is scored against the originals.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from colorize_core.backbone import imagenet_weights_path
from colorize_core.batch import colorize_files
from colorize_core.evaluate import evaluate
from colorize_core.infer import Colorizer
from colorize_core.models import ModelConfig
from colorize_core.train import StepInfo, TrainConfig, train

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
    def colorized(self) -> Path:
        return self.root / "colorized"

    @property
    def checkpoint(self) -> Path:
        return self.root / "model.safetensors"


def sample_photo_paths() -> list[Path]:
    """The bundled sample photos that exist in the installed scikit-image."""
    import skimage

    data_dir = Path(skimage.__file__).parent / "data"
    found = [data_dir / name for name in SAMPLE_PHOTOS if (data_dir / name).is_file()]
    if not found:
        raise FileNotFoundError(f"no sample photos found in {data_dir}; is scikit-image installed?")
    return found


def make_archives(layout: DemoLayout) -> tuple[int, int]:
    """Copy sample photos into photos/ and write their gray versions into gray/."""
    layout.photos.mkdir(parents=True, exist_ok=True)
    layout.gray.mkdir(parents=True, exist_ok=True)
    for src in sample_photo_paths():
        shutil.copyfile(src, layout.photos / src.name)
        with Image.open(src) as img:
            img.convert("L").save(layout.gray / src.name)
    n = len(list(layout.photos.iterdir()))
    return n, n


def default_backbone() -> str:
    """ImageNet VGG16 when torchvision's cache has it (real features), else random weights."""
    if imagenet_weights_path().is_file():
        return "imagenet"
    log.warning(
        "VGG16 ImageNet weights not in %s: the demo trains on a random backbone (expect a toy result)",
        imagenet_weights_path(),
    )
    return "none"


@dataclass(frozen=True)
class DemoResult:
    layout: DemoLayout
    photos: int
    train_steps: int
    model_id: str
    colorized_ok: int
    colorized_failed: int
    report: dict[str, object]


def run_demo(
    out: str | Path,
    *,
    seconds: float = 60.0,
    image_size: int = 64,
    batch_size: int = 8,
    device: str = "auto",
    on_step: Callable[[StepInfo], None] | None = None,
) -> DemoResult:
    """Build the archives, train for about `seconds`, colorize the gray archive, evaluate."""
    layout = DemoLayout(Path(out))
    photos, _ = make_archives(layout)
    cfg = TrainConfig(
        data=str(layout.photos),
        out=str(layout.checkpoint),
        model=ModelConfig(image_size=image_size),
        backbone_weights=default_backbone(),
        batch_size=batch_size,
        steps=100_000,  # bounded by the time budget below
        max_seconds=seconds,
        # Adam converges in the minute a demo has; the seed's SGD needs days (see README).
        optimizer="adam",
        lr=1e-3,
        device=device,
        checkpoint_every=100,
        val_dir=str(layout.root / "triptychs"),
    )
    result = train(cfg, on_step=on_step)
    colorizer = Colorizer.from_checkpoint(layout.checkpoint, device=device)
    files = colorize_files([layout.gray], layout.colorized, colorizer)
    report = evaluate(layout.photos, colorizer)
    return DemoResult(
        layout,
        photos,
        result.step,
        result.model_id,
        sum(r.ok for r in files),
        sum(not r.ok for r in files),
        report.to_dict(),
    )
