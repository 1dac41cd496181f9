"""Extra training examples from the tune split only: K fresh aged prints per tune colour photo
(seeds [i, k, 7], never the eval's), and C random crops (+flip) of each tune colour photo; for
symmetry prints are made from random crops too. Stores 128 px thumbnails + group id (source photo)."""
import pickle, sys, time
import numpy as np
from PIL import Image
sys.path.insert(0, "/work/main")
from bench.aged_prints import age_print
from colorize_core.monochrome.fit import thumbnail

K, C = int(sys.argv[1]), int(sys.argv[2])
tune = pickle.load(open("/tmp/mono2/tune.pkl", "rb"))
src = [(g, d) for g, d in enumerate(tune) if d["kind"] == "imagenet" and d["truth"] == "colour"]
def crop(rgb, rng):
    h, w = rgb.shape[:2]
    s = rng.uniform(0.7, 1.0)
    ch, cw = int(h * s), int(w * rng.uniform(max(0.7, s * 0.8), 1.0))
    y0, x0 = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    out = rgb[y0:y0 + ch, x0:x0 + cw]
    return out[:, ::-1] if rng.random() < 0.5 else out
out = []
t0 = time.time()
for n, (g, d) in enumerate(src):
    rgb = d["rgb512"]
    for k in range(K):
        rng = np.random.default_rng([g, k, 7])
        base = rgb if k % 2 == 0 else np.ascontiguousarray(crop(rgb, rng))
        a = age_print(base, rng)
        out.append(dict(group=g, truth="monochrome", kind="aged:" + a.tone, marks=tuple(a.marks), thumb=thumbnail(Image.fromarray(a.rgb))))
    for c in range(C):
        rng = np.random.default_rng([g, c, 8])
        out.append(dict(group=g, truth="colour", kind="imagenet-crop", marks=(), thumb=thumbnail(Image.fromarray(np.ascontiguousarray(crop(rgb, rng))))))
    if n % 50 == 0:
        print(n, time.time() - t0, flush=True)
pickle.dump(out, open(f"/tmp/mono2/bank_K{K}_C{C}.pkl", "wb"), protocol=5)
print(len(out), time.time() - t0)
