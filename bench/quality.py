"""Model quality at an equal budget: trains each variant with the same steps, time budget,
seed, optimiser and data on `photos-train`, and scores it on `photos-val`, which it never
trains on, at the photos' own resolution (colorize_core.evaluate: PSNR, SSIM, colourfulness
and its gap to the truth, Zhang et al.'s AuC, border / interior chroma error), beside the gray
baseline. One JSON line per variant; QUALITY.md keeps the table.

It also writes `strip.png` to --out: for a few sample photos bundled with scikit-image (not
in either set), gray | each variant | truth, one row per photo.

Run: `.venv/bin/python -m bench.quality [--variants regression,classification] [--steps 100000
--seconds 600 --image-size 64 --val-limit 100] [--out quality-output]`. The train and val
folders default to ../shared/data/photos-train and photos-val.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.common import SHARED, machine
from colorize_core.evaluate import evaluate
from colorize_core.model.checkpoint import load_model
from colorize_core.model.config import ModelConfig
from colorize_core.model.infer import Colorizer
from colorize_core.training.config import TrainConfig
from colorize_core.training.train import train

# name -> the model: each says its padding, so a change of ModelConfig's defaults never changes
# what a variant name measured (the seed's model: frozen VGG16, regression head, zero padding).
VARIANTS: dict[str, dict[str, Any]] = {
    "regression": {"padding": "zeros"},
    "regression-replicate": {"padding": "replicate"},
    "classification": {"head": "classification", "padding": "zeros"},
    "classification-replicate": {"head": "classification", "padding": "replicate"},
    "regression-train-backbone": {"train_backbone": True, "padding": "zeros"},
    "classification-train-backbone": {"head": "classification", "train_backbone": True, "padding": "zeros"},
}
STRIP_PHOTOS = ("chelsea.png", "coffee.png", "astronaut.png")


def _train_variant(name: str, args: argparse.Namespace, out: Path) -> tuple[str, dict[str, Any]]:
    model = ModelConfig(image_size=args.image_size, **VARIANTS[name])
    cfg = TrainConfig(
        data=args.train, out=str(out / f"{name}.safetensors"), model=model, backbone_weights=args.backbone_weights,
        batch_size=args.batch_size, steps=args.steps, max_seconds=args.seconds, optimizer=args.optimizer, lr=args.lr,
        seed=args.seed, checkpoint_every=args.steps, device=args.device, val_dir=str(out / f"{name}_val"),
    )  # fmt: skip
    started = time.perf_counter()
    result = train(cfg, log_every=50)
    budget = {"steps": result.step, "train_s": round(time.perf_counter() - started, 1), "samples": result.step * args.batch_size}
    return cfg.out, budget


def _strip(checkpoints: dict[str, str], device: str, height: int = 160) -> Image.Image | None:
    """gray | each variant | truth for the bundled sample photos, `height` px tall each."""
    try:
        import skimage
    except ImportError:
        return None
    data = Path(skimage.__file__).parent / "data"
    photos = [data / n for n in STRIP_PHOTOS if (data / n).is_file()]
    colorizers = {name: Colorizer(load_model(ckpt), device=device) for name, ckpt in checkpoints.items()}
    rows = []
    for path in photos:
        truth = Image.open(path).convert("RGB")
        truth = truth.resize((round(truth.width * height / truth.height), height), Image.Resampling.LANCZOS)
        gray = truth.convert("L")
        luma = np.asarray(gray, dtype=np.float32) / 255.0
        cells = [np.asarray(gray.convert("RGB"))]
        cells += [c.colorize_luma([luma])[0] for c in colorizers.values()]
        cells.append(np.asarray(truth))
        rows.append(np.concatenate(cells, axis=1))
    if not rows:
        return None
    width = max(r.shape[1] for r in rows)  # photos differ in aspect: pad the narrower rows white
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return Image.fromarray(np.concatenate(rows, axis=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default=str(SHARED / "photos-train"))
    parser.add_argument("--val", default=str(SHARED / "photos-val"))
    parser.add_argument("--variants", default="regression,classification", help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--steps", type=int, default=100_000, help="step budget (the time budget usually ends it first)")
    parser.add_argument("--seconds", type=float, default=600.0, help="training time budget per variant")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backbone-weights", default="none", help="none (nothing can be downloaded here), imagenet or a file")
    parser.add_argument("--val-limit", type=int, default=100, help="val photos scored (the first N, sorted)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="quality-output")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    checkpoints: dict[str, str] = {}
    for name in names:
        checkpoint, budget = _train_variant(name, args, out)
        checkpoints[name] = checkpoint
        colorizer = Colorizer(load_model(checkpoint), device=args.device)
        report = evaluate(args.val, colorizer, limit=args.val_limit).to_dict()
        line = {
            "bench": "quality", "variant": name, **VARIANTS[name], "budget": budget, "budget_s": args.seconds,
            "image_size": args.image_size, "batch_size": args.batch_size, "optimizer": args.optimizer, "lr": args.lr,
            "seed": args.seed, "backbone_weights": args.backbone_weights, "val_photos": report["images"],
            "model": report["model"], "gray_baseline": report["gray_baseline"], "truth_colourfulness": report["truth_colourfulness"],
            "machine": machine(), "date": time.strftime("%Y-%m-%d"), "device": str(colorizer.device),
        }  # fmt: skip
        print(json.dumps(line), flush=True)
    strip = _strip(checkpoints, args.device)
    if strip is not None:
        strip.save(out / "strip.png")
        print(json.dumps({"bench": "quality", "strip": str(out / "strip.png"), "columns": ["gray", *checkpoints, "truth"]}))


if __name__ == "__main__":
    main()
