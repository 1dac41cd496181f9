"""What Content Credentials cost: signing one output (storage/credentials.py: hash the file,
embed the manifest, sign the claim) by format and size, and the end-to-end overhead of a signed
archive shard on CPU against the same shard unsigned, in the same run.

- `sign`: the median of `--repeats` signings of an encoded output, per format (JPEG, PNG, TIFF,
  WebP) and size (0.3 MP, 6 MP), with the output's bytes; the source is hashed too (as a run does).
- `shard`: `colorize_shard` over `--photos` smooth gray JPEGs (1024 x 768) with the default
  model (untrained weights: the same work as a trained one) on the CPU's default path,
  unsigned and signed, interleaved (the order alternating), best of `--rounds` each;
  `overhead` = signed / unsigned - 1, and the median of the rounds' own ratios.
  The signing identity is a test authority's (tests/certs.py), made on the fly.

Run: `.venv/bin/python -m bench.bench_credentials [--photos 48] [--rounds 4]`. JSON lines.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import machine, photo_folder, smooth_photo, untrained_checkpoint
from colorize_core.storage.credentials import ContentSigner, Origin, load_identity
from colorize_core.storage.imageio import encode, output_format_for
from colorize_core.storage.provenance import Provenance


def bench_sign(signer: ContentSigner, repeats: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    out = []
    for width, height in ((640, 480), (3000, 2000)):
        img = smooth_photo(rng, width, height, colour=True)
        source = io.BytesIO()
        img.convert("L").save(source, "JPEG", quality=90)
        for suffix in (".jpg", ".png", ".tif", ".webp"):
            fmt = output_format_for(f"photo{suffix}")
            data = encode(img, fmt, Provenance("residual_encoder-bench", f"box/photo{suffix}"))
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                signer.sign(data, fmt.pil_format, Origin.of(f"box/photo{suffix}", source.getvalue(), "residual_encoder-bench", "JPEG"))
                times.append(time.perf_counter() - start)
            out.append({"bench": "c2pa_sign", "format": fmt.pil_format, "megapixels": round(width * height / 1e6, 2), "output_bytes": len(data), "sign_ms": round(statistics.median(times) * 1000, 2)})
    return out


def bench_shard(signer: ContentSigner, photos: int, rounds: int) -> dict[str, Any]:
    from colorize_core.archive.listing import list_images
    from colorize_core.archive.shards import colorize_shard
    from colorize_core.model.infer import Colorizer
    from colorize_core.storage.stores import open_store

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src = photo_folder(root / "src", photos, 1024, 768, seed=1)
        ckpt = untrained_checkpoint(root / "model.safetensors")
        colorizer = Colorizer.from_checkpoint(ckpt, device="cpu")
        items = list_images(open_store(str(src)))
        colorize_shard(str(src), str(root / "warm"), items[: colorizer.batch_size], colorizer, run_id="warm", shard=0)  # conversions, caches
        seconds: dict[str, list[float]] = {"unsigned": [], "signed": []}
        for r in range(rounds):
            order = (("unsigned", None), ("signed", signer))
            for name, with_signer in order if r % 2 == 0 else order[::-1]:  # neither always first
                start = time.perf_counter()
                outcome = colorize_shard(str(src), str(root / f"{name}-{r}"), items, colorizer, run_id=f"{name}{r}", shard=0, signer=with_signer)
                seconds[name].append(time.perf_counter() - start)
                assert outcome.counts["ok"] == photos, outcome.counts
        unsigned, signed = min(seconds["unsigned"]), min(seconds["signed"])
        return {
            "bench": "c2pa_shard", "photos": photos, "size": "1024x768 JPEG", "cpu_path": colorizer.cpu_path, "unsigned_s": round(unsigned, 2), "signed_s": round(signed, 2),
            "runs_s": {k: [round(v, 2) for v in vs] for k, vs in seconds.items()}, "photos_per_s_unsigned": round(photos / unsigned, 2),
            "overhead": round(signed / unsigned - 1, 4),
            "overhead_median_of_rounds": round(statistics.median(b / a - 1 for a, b in zip(seconds["unsigned"], seconds["signed"])), 4),
        }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    from tests.certs import issue

    with tempfile.TemporaryDirectory() as tmp:
        issued = issue(Path(tmp), "Bench Signer")
        signer = ContentSigner(load_identity(issued.cert, issued.key))
    extra = {"machine": machine(), "date": time.strftime("%Y-%m-%d")}
    for row in bench_sign(signer, args.repeats):
        print(json.dumps(row | extra), flush=True)
    print(json.dumps(bench_shard(signer, args.photos, args.rounds) | extra), flush=True)


if __name__ == "__main__":
    main()
