"""Thumbnail (<=128 px) -> 5 x S x S float16 input: luma-0.5, U*10, V*10 and today's-fit leftover U*10, V*10,
resized (bilinear) to S x S."""
import pickle, sys
import numpy as np
import torch
import torch.nn.functional as F
sys.path.insert(0, "/tmp/mono2"); sys.path.insert(0, "/work/main")
from features import fit
from colorize_core.monochrome.fit import _yuv, LUMA_BINS
torch.set_num_threads(1)
S = 96

def prep(thumb):
    y, u, v = _yuv(thumb)
    h, w = y.shape
    uv = np.stack([u.ravel(), v.ravel()], 1)
    left, _, _ = fit(y, uv, LUMA_BINS, 4)
    x = np.stack([y - 0.5, u * 10, v * 10, left[:, 0].reshape(h, w) * 10, left[:, 1].reshape(h, w) * 10]).astype(np.float32)
    t = torch.from_numpy(x)[None]
    return F.interpolate(t, size=(S, S), mode="bilinear", align_corners=False, antialias=False)[0]

if __name__ == "__main__":
    src, dst = sys.argv[1], sys.argv[2]
    data = pickle.load(open(src, "rb"))
    X = torch.stack([prep(d["thumb"]) for d in data]).half()
    torch.save(X, dst)
    print(X.shape)
