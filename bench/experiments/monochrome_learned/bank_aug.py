"""Colour views with the scan pipeline applied to colour photos too (so scanner noise / JPEG / a cast / low
saturation are not shortcuts to 'print'): 6 random crops (+flip) per tune colour photo, each with
p=0.7 chroma scaled by U(0.3, 1), p=0.5 a cast, p=0.7 scanner noise, p=0.7 JPEG q40-92 4:2:0.
Combined with the prints of bank_K10_C6 (same groups, same features) into bank_K10_C6aug."""
import pickle, sys, io
import numpy as np
from PIL import Image
sys.path.insert(0, "/work/main"); sys.path.insert(0, "/tmp/mono2")
from bench.aged_prints import yuv_to_rgb8
from colorize_core.monochrome.fit import thumbnail, _yuv
from features import features
from cnn_prep import prep
import torch
def crop(rgb, rng):
    h, w = rgb.shape[:2]
    s = rng.uniform(0.7, 1.0)
    ch, cw = int(h * s), int(w * rng.uniform(max(0.7, s * 0.8), 1.0))
    y0, x0 = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    out = rgb[y0:y0 + ch, x0:x0 + cw]
    return out[:, ::-1] if rng.random() < 0.5 else out
def scan(rgb, rng):
    if rng.random() < 0.7 or rng.random() < 0.5:
        y, u, v = _yuv(rgb)
        s = rng.uniform(0.3, 1.0) if rng.random() < 0.7 / 0.85 else 1.0
        cu, cv_ = (rng.uniform(-0.012, 0.012, 2) if rng.random() < 0.5 else (0.0, 0.0))
        rgb = yuv_to_rgb8(y, u * s + cu, v * s + cv_)
    if rng.random() < 0.7:
        sigma = rng.uniform(0.5, 3.0)
        rgb = np.clip(rgb.astype(np.float32) + rng.normal(0, sigma, rgb.shape).astype(np.float32) + rng.uniform(-2, 2, 3).astype(np.float32) + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < 0.7:
        buf = io.BytesIO(); Image.fromarray(rgb).save(buf, format="JPEG", quality=int(rng.integers(40, 93)), subsampling=2)
        rgb = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return rgb
tune = pickle.load(open("/tmp/mono2/tune.pkl", "rb"))
old = pickle.load(open("/tmp/mono2/bank_K10_C6_meta.pkl", "rb"))
Xold = np.load("/tmp/mono2/X_bank_K10_C6.npy"); Cold = torch.load("/tmp/mono2/cnn_bank.pt")
keep = [i for i, d in enumerate(old) if d["truth"] == "monochrome"]
meta = [old[i] for i in keep]; feats = [Xold[keep]]; cnn = [Cold[keep]]
newm, newx, newc = [], [], []
for g, d in enumerate(tune):
    if d["kind"] != "imagenet" or d["truth"] != "colour": continue
    for c in range(6):
        rng = np.random.default_rng([g, c, 11])
        th = thumbnail(Image.fromarray(scan(np.ascontiguousarray(crop(d["rgb512"], rng)), rng)))
        newm.append(dict(group=g, truth="colour", kind="imagenet-crop-scan", marks=())); newx.append(features(th)); newc.append(prep(th))
pickle.dump(meta + newm, open("/tmp/mono2/bank_K10_C6aug_meta.pkl", "wb"))
np.save("/tmp/mono2/X_bank_K10_C6aug.npy", np.concatenate(feats + [np.stack(newx)]))
torch.save(torch.cat(cnn + [torch.stack(newc).half()]), "/tmp/mono2/cnn_bank_aug.pt")
print(len(meta) + len(newm))
