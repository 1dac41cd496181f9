"""The black-and-white-or-colour decision (colorize_core/monochrome/) on a labelled set.

Colour: real colour photos from ../shared/data (ImageNet's photos-train, less the black-and-white
and toned photos ImageNet itself holds, listed below by hand; Berkeley's photos-val).
Black-and-white: prints made from those photos by bench/aged_prints.py (toning, yellowing,
foxing, stains, vignettes, hand-tinted areas, cyanotype, scanner noise, JPEG), the real
historical prints in bw-historical/, and ImageNet's own black-and-white photos.

The decision's network is trained and its threshold chosen on the "tune" split (photos-train's
even files, Berkeley's train/ folder, prints made from them: bench/train_monochrome.py), so the
tune figures here are its training set's; the "held-out" split (photos-train's odd files,
Berkeley's val/ and test/, prints made from those with other seeds, and the real prints) was not
looked at while training or choosing. Prints one JSON object per split
(confusion matrix, rates, per tone and per mark), then the misjudged files.

    python -m bench.monochrome_eval [--data ../shared/data] [--limit N] [--prints-per-photo 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bench.aged_prints import age_print
from bench.common import SHARED, machine
from colorize_core.monochrome import MonochromeThresholds, decision_id, judge_thumbnail, measure, thumbnail

# Photos in photos-train that are black-and-white or toned prints (ImageNet holds a few), looked
# at one by one; numerically gray ones (mean chroma < 0.004) are found by measurement.
IMAGENET_MONOCHROME = frozenset(
    {
        "n01744401_rock_python.JPEG",
        "n02088466_bloodhound.JPEG",
        "n02814860_beacon.JPEG",
        "n03028079_church.JPEG",
        "n03866082_overskirt.JPEG",
        "n03929855_pickelhaube.JPEG",
        "n04099969_rocking_chair.JPEG",
        "n04141975_scale.JPEG",
        "n04146614_school_bus.JPEG",
        "n07734744_mushroom.JPEG",
        "n12144580_corn.JPEG",
    }
)


SPLITS = frozenset({"tune", "held-out"})


@dataclass
class Item:
    name: str
    split: str  # tune | held-out
    truth: str  # colour | monochrome
    kind: str  # where it came from: imagenet, bsds, aged:<tone>, historical
    marks: tuple[str, ...] = ()


def _load(path: Path, limit: int = 512) -> np.ndarray:
    img = Image.open(path)
    img.draft("RGB", (limit, limit))
    img = img.convert("RGB")
    img.thumbnail((limit, limit), Image.Resampling.BICUBIC)
    return np.asarray(img)


def labelled_set(data: Path, limit: int | None, prints_per_photo: int, splits: frozenset[str] = SPLITS) -> Iterator[tuple[Item, np.ndarray]]:
    """Every item of the labelled set in `splits`, with its pixels (longest side <= 512)."""
    train = sorted((data / "photos-train").glob("*.JPEG"))[:limit]
    val = sorted((data / "photos-val").glob("*/*.jpg"))[:limit]
    historical = sorted(p for p in (data / "bw-historical").glob("*/*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    for i, path in enumerate(train):
        split = "tune" if i % 2 == 0 else "held-out"
        if split not in splits:
            continue
        rgb = _load(path)
        mono = path.name in IMAGENET_MONOCHROME or measure(thumbnail(Image.fromarray(rgb))).mean_chroma < MonochromeThresholds.gray_chroma
        yield Item(path.name, split, "monochrome" if mono else "colour", "imagenet"), rgb
        if mono:
            continue  # a print of a print is not a new case
        for k in range(prints_per_photo):
            aged = age_print(rgb, np.random.default_rng([i, k, 0 if split == "tune" else 1]))
            yield Item(f"{path.name}#print{k}", split, "monochrome", f"aged:{aged.tone}", tuple(aged.marks)), aged.rgb
    for i, path in enumerate(val):
        # Berkeley's own split: its train/ folder's natural scenes are tuned on, val/ and test/ held out.
        split = "tune" if path.parent.name == "train" else "held-out"
        if split not in splits:
            continue
        rgb = _load(path)
        yield Item(f"{path.parent.name}/{path.name}", split, "colour", "bsds"), rgb
        for k in range(prints_per_photo):
            aged = age_print(rgb, np.random.default_rng([10_000 + i, k, 0 if split == "tune" else 2]))
            yield Item(f"{path.parent.name}/{path.name}#print{k}", split, "monochrome", f"aged:{aged.tone}", tuple(aged.marks)), aged.rgb
    if "held-out" in splits:
        for path in historical:
            yield Item(f"{path.parent.name}/{path.name}", "held-out", "monochrome", "historical"), _load(path)


def summarize(rows: list[dict]) -> dict:
    """Confusion matrix and rates of one split; the per-kind and per-mark recall of black-and-white."""
    cm = Counter((r["truth"], "monochrome" if r["monochrome"] else "colour") for r in rows)
    mono = [r for r in rows if r["truth"] == "monochrome"]
    colour = [r for r in rows if r["truth"] == "colour"]
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_mark: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    wrong_colour: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in colour:
        wrong_colour[r["kind"]][0] += r["monochrome"]
        wrong_colour[r["kind"]][1] += 1
    for r in mono:
        by_kind[r["kind"]][0] += r["monochrome"]
        by_kind[r["kind"]][1] += 1
        for m in r["marks"]:
            by_mark[m][0] += r["monochrome"]
            by_mark[m][1] += 1
    return {
        "confusion": {f"{t} as {p}": n for (t, p), n in sorted(cm.items())},
        "monochrome_recall": round(sum(r["monochrome"] for r in mono) / max(1, len(mono)), 4),
        "colour_taken_for_monochrome": round(sum(r["monochrome"] for r in colour) / max(1, len(colour)), 4),
        "monochrome": len(mono),
        "colour": len(colour),
        "recall_by_kind": {k: f"{a}/{n}" for k, (a, n) in sorted(by_kind.items())},
        "recall_by_mark": {k: f"{a}/{n}" for k, (a, n) in sorted(by_mark.items())},
        "colour_taken_for_monochrome_by_kind": {k: f"{a}/{n}" for k, (a, n) in sorted(wrong_colour.items())},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--limit", type=int, default=None, help="photos per colour set (default: all)")
    ap.add_argument("--prints-per-photo", type=int, default=1)
    ap.add_argument("--rows", type=Path, default=None, help="write every item's evidence here (JSON lines)")
    args = ap.parse_args(argv)
    if not (args.data / "photos-train").is_dir():
        print(f"no labelled photos under {args.data}: this benchmark needs ../shared/data", file=sys.stderr)
        return 1
    limits = MonochromeThresholds()
    rows = []
    judging_s = 0.0
    for item, rgb in labelled_set(args.data, args.limit, args.prints_per_photo):
        thumb = thumbnail(Image.fromarray(rgb))
        t0 = time.perf_counter()
        verdict = judge_thumbnail(thumb, limits)
        judging_s += time.perf_counter() - t0
        rows.append({**asdict(item), **asdict(verdict.evidence), "score": verdict.score, "monochrome": verdict.monochrome, "reason": verdict.reason})
    if args.rows:
        args.rows.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # The decision's own cost on its thumbnail (the fit and the network; making the thumbnail is the decoder's).
    report = {"machine": machine(), "decision": decision_id(limits), "ms_per_photo": round(1000 * judging_s / max(1, len(rows)), 2)}
    for split in ("tune", "held-out"):
        report[split] = summarize([r for r in rows if r["split"] == split])
    print(json.dumps(report, indent=1))
    for r in rows:
        if (r["truth"] == "monochrome") != r["monochrome"]:
            print(f"misjudged [{r['split']}] {r['truth']} {r['kind']} {r['name']}: {r['reason']} {list(r['marks'])}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
