"""Train the black-and-white-or-colour network (colorize_core/monochrome/net.py) and choose its
threshold, on the tune split of bench/monochrome_eval.py's labelled set only.

Examples: each tune colour photo (ImageNet's even files less its own prints, Berkeley's train/
folder) and 6 random crops of it as colour; the tune split's print of it and `--prints` more
aged prints (new seeds, half of them from crops) as black-and-white; ImageNet's own
black-and-white photos. Each epoch takes one colour view and one print of every photo, flipped
and cropped at random, so the network sees each photo as often in colour as in print.

The threshold: 5-fold cross-validation grouped by source photo (a photo, its crops and its prints
in one fold) scores every tune example with a network that never saw its photo; the threshold is
where `--recall` of those prints are called black-and-white (gray ones count as called, as the
decision's gray rule calls them). Then one network is trained on all of it and saved with the
threshold and the cross-validated figures (`about`) to colorize_core/monochrome/weights.pt.

    python -m bench.train_monochrome [--data ../shared/data] [--out colorize_core/monochrome/weights.pt]

About 25 minutes on one core of the 2-core development machine (6 of them making the examples).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from bench.aged_prints import age_print
from bench.common import SHARED, machine
from bench.monochrome_eval import labelled_set
from colorize_core.monochrome.decision import MonochromeThresholds
from colorize_core.monochrome.fit import fit, thumbnail
from colorize_core.monochrome.net import WEIGHTS, BlackAndWhiteNet, net_input, save

FOLDS = 5
BATCHES_PER_EPOCH = 32


@dataclass
class Examples:
    """Every training example's network input, label (1: black-and-white), source photo, and
    whether the gray rule already calls it black-and-white."""

    x: torch.Tensor  # (n, 5, SIDE, SIDE) float16
    bw: np.ndarray  # (n,) bool
    group: np.ndarray  # (n,) int: the source photo
    gray: np.ndarray  # (n,) bool
    kind: list[str]  # colour | crop | print | own-bw


def _crop(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = rng.uniform(0.7, 1.0)
    ch, cw = int(h * s), int(w * rng.uniform(max(0.7, s * 0.8), 1.0))
    y0, x0 = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    out = rgb[y0 : y0 + ch, x0 : x0 + cw]
    return np.ascontiguousarray(out[:, ::-1] if rng.random() < 0.5 else out)


def make_examples(data: Path, prints: int, crops: int, limit: int | None = None) -> Examples:
    xs: list[torch.Tensor] = []
    bw: list[bool] = []
    group: list[int] = []
    gray: list[bool] = []
    kind: list[str] = []
    gray_chroma = MonochromeThresholds().gray_chroma

    def add(rgb: np.ndarray, is_bw: bool, g: int, what: str) -> None:
        fitted = fit(thumbnail(Image.fromarray(rgb)))
        xs.append(net_input(fitted).half())
        bw.append(is_bw)
        group.append(g)
        gray.append(fitted.evidence.mean_chroma < gray_chroma)
        kind.append(what)

    groups: dict[str, int] = {}
    t0 = time.monotonic()
    for item, rgb in labelled_set(data, limit, 1, frozenset({"tune"})):
        g = groups.setdefault(item.name.split("#")[0], len(groups))
        if item.truth == "monochrome":
            add(rgb, True, g, "own-bw" if item.kind == "imagenet" else "print")
            continue
        add(rgb, False, g, "colour")
        for k in range(prints):  # seeds [group, k, 7]: never the labelled set's
            rng = np.random.default_rng([g, k, 7])
            add(age_print(rgb if k % 2 == 0 else _crop(rgb, rng), rng).rgb, True, g, "print")
        for c in range(crops):
            add(_crop(rgb, np.random.default_rng([g, c, 8])), False, g, "crop")
        if len(groups) % 50 == 0:
            print(f"{len(groups)} photos, {len(xs)} examples, {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    return Examples(torch.stack(xs), np.array(bw), np.array(group), np.array(gray), kind)


def train(ex: Examples, rows: np.ndarray, epochs: int, seed: int = 0) -> BlackAndWhiteNet:
    """A network trained on the examples `rows` (indices)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed + 1)
    net = BlackAndWhiteNet()
    opt = torch.optim.AdamW(net.parameters(), 3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=epochs * BATCHES_PER_EPOCH, pct_start=0.15)
    prints: dict[int, list[int]] = {}
    colour: dict[int, list[int]] = {}
    own_bw: list[int] = []
    for i in rows:
        if ex.kind[i] == "own-bw":
            own_bw.append(int(i))
        else:
            (prints if ex.bw[i] else colour).setdefault(int(ex.group[i]), []).append(int(i))
    labels = torch.from_numpy(ex.bw.astype(np.float32))
    for epoch in range(epochs):
        net.train()
        pick = [v[int(rng.integers(len(v)))] for v in prints.values()] + [v[int(rng.integers(len(v)))] for v in colour.values()] + own_bw
        order = torch.from_numpy(rng.permutation(np.array(pick)))
        for batch in torch.tensor_split(order, BATCHES_PER_EPOCH):
            if len(batch) == 0:
                continue
            loss = F.binary_cross_entropy_with_logits(net(_augment(ex.x[batch].float(), rng)), labels[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched.last_epoch < epochs * BATCHES_PER_EPOCH - 1:
                sched.step()
        if epoch % 10 == 9:
            print(f"  epoch {epoch + 1}: loss {loss.item():.4f}", file=sys.stderr, flush=True)
    return net.eval()


def _augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    if rng.random() < 0.5:
        x = x.flip(3)
    if rng.random() < 0.5:
        x = x.flip(2)
    side = x.shape[-1]
    c = int(rng.integers(int(side * 0.83), side + 1))
    y0, x0 = rng.integers(0, side - c + 1, 2)
    return x[:, :, y0 : y0 + c, x0 : x0 + c]


def scores(net: BlackAndWhiteNet, x: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return torch.cat([net(x[i : i + 256].float()) for i in range(0, len(x), 256)]).numpy()


def choose_threshold(ex: Examples, oof: np.ndarray, recall: float) -> tuple[float, dict]:
    """The logit where `recall` of the prints are called black-and-white, and the figures there."""
    called = np.where(ex.gray, np.inf, oof)
    threshold = float(np.quantile(called[ex.bw], 1 - recall))
    is_bw = called >= threshold
    kinds = np.array(ex.kind)

    def share(mask: np.ndarray) -> str:
        return f"{int(is_bw[mask].sum())}/{int(mask.sum())}"

    return threshold, {
        "prints called black-and-white": share(ex.bw & (kinds == "print")),
        "ImageNet's own black-and-white called so": share(kinds == "own-bw"),
        "colour photos taken for black-and-white": share(kinds == "colour"),
        "colour crops taken for black-and-white": share(kinds == "crop"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--out", type=Path, default=WEIGHTS)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--prints", type=int, default=10, help="more aged prints of each colour photo")
    ap.add_argument("--crops", type=int, default=6, help="random crops of each colour photo")
    ap.add_argument("--recall", type=float, default=0.9875, help="share of tune prints called black-and-white")
    ap.add_argument("--limit", type=int, default=None, help="photos per colour set (a quick try)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    if not (args.data / "photos-train").is_dir():
        print(f"no labelled photos under {args.data}: training needs ../shared/data", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    t0 = time.monotonic()
    ex = make_examples(args.data, args.prints, args.crops, args.limit)
    made_s = time.monotonic() - t0
    # Folds by source photo, drawn once with a fixed seed.
    fold = np.random.default_rng(0).permutation(int(ex.group.max()) + 1) % FOLDS
    fold_of = fold[ex.group]
    oof = np.zeros(len(ex.bw), np.float32)
    for k in range(FOLDS):
        print(f"fold {k + 1}/{FOLDS}", file=sys.stderr, flush=True)
        if not (fold_of == k).any():
            continue  # a quick try with fewer photos than folds
        net = train(ex, np.flatnonzero(fold_of != k), args.epochs)
        oof[fold_of == k] = scores(net, ex.x[fold_of == k])
    threshold, figures = choose_threshold(ex, oof, args.recall)
    print("all examples", file=sys.stderr, flush=True)
    net = train(ex, np.arange(len(ex.bw)), args.epochs)
    about = {
        "trained_on": "bench/monochrome_eval.py's tune split (ImageNet's even files, Berkeley's train/) with "
        f"{args.prints} more prints and {args.crops} crops of each colour photo; {len(ex.bw)} examples",
        "epochs": args.epochs,
        "threshold_at_cross_validated_print_recall": args.recall,
        "cross_validated": figures,
        "machine": machine(),
        "seconds": round(time.monotonic() - t0),
    }
    save(args.out, net, threshold, about)
    print(json.dumps({"out": str(args.out), "threshold": threshold, "examples_s": round(made_s), **about}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
