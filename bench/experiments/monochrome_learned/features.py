"""Rich colour-evidence features of a uint8 RGB thumbnail (<= 128 px), numpy only."""
import sys
import numpy as np
sys.path.insert(0, "/work/main")
from colorize_core.monochrome.fit import _yuv, _grid_basis, LUMA_BINS, VISIBLE

_BASIS = {}
def basis(h, w, cells):
    k = (h, w, cells)
    if k not in _BASIS:
        _BASIS[k] = _grid_basis(h, w, cells)
    return _BASIS[k]

_GG = {}
def fit(y, uv, nb, cells):
    """chroma = tone(luma bin) + bilinear grid field, least squares, blockwise (same solution as
    the dense design of colorize_core.monochrome.measure)."""
    h, w = y.shape
    bins = np.minimum((y.ravel() * nb).astype(np.int64), nb - 1)
    cnt = np.bincount(bins, minlength=nb).astype(np.float64)
    tu = np.stack([np.bincount(bins, uv[:, 0], nb), np.bincount(bins, uv[:, 1], nb)], 1)
    if not cells:
        coef = tu / (cnt + 1e-4)[:, None]
        return (uv - coef[bins]).astype(np.float32), None, bins
    B = basis(h, w, cells)[:, 1:]
    k = (h, w, cells)
    if k not in _GG:
        _GG[k] = (B.T @ B).astype(np.float64)
    m = B.shape[1]
    TB = np.zeros((nb, m))
    np.add.at(TB, bins, B) if False else None
    for j in range(m):
        TB[:, j] = np.bincount(bins, B[:, j], nb)
    gram = np.zeros((nb + m, nb + m))
    gram[:nb, :nb] = np.diag(cnt); gram[:nb, nb:] = TB; gram[nb:, :nb] = TB.T; gram[nb:, nb:] = _GG[k]
    gram += 1e-4 * np.eye(nb + m)
    rhs = np.concatenate([tu, (B.T @ uv).astype(np.float64)])
    coef = np.linalg.solve(gram, rhs).astype(np.float32)
    field = B @ coef[nb:]
    left = uv - coef[:nb][bins] - field
    return left, field, bins

def box(a, r):
    """mean over (2r+1)^2 window, edges: shrinking window. a: (h, w, c)"""
    h, w = a.shape[:2]
    c = np.pad(a, ((1, 0), (1, 0), (0, 0))).cumsum(0).cumsum(1)
    y0 = np.clip(np.arange(h) - r, 0, h); y1 = np.clip(np.arange(h) + r + 1, 0, h)
    x0 = np.clip(np.arange(w) - r, 0, w); x1 = np.clip(np.arange(w) + r + 1, 0, w)
    s = c[y1][:, x1] - c[y0][:, x1] - c[y1][:, x0] + c[y0][:, x0]
    cnt = ((y1 - y0)[:, None] * (x1 - x0)[None, :])[..., None]
    return s / cnt

def pct(a, qs):
    return list(np.percentile(a, qs))

def hue_stats(vecs, mags, thr, sectors=12):
    m = mags > thr
    share = float(m.mean())
    if m.sum() < 5:
        return [share, 0.0, 1.0, 0.0, 0.0]
    ang = np.arctan2(vecs[m, 1], vecs[m, 0])
    sec = ((ang + np.pi) / (2 * np.pi) * sectors).astype(int) % sectors
    p = np.bincount(sec, minlength=sectors) / m.sum()
    ent = float(-(p[p > 0] * np.log(p[p > 0])).sum())
    top = float(p.max())
    nsec = float((p > 0.1).sum())
    R = float(np.hypot(np.cos(ang).mean(), np.sin(ang).mean()))  # resultant length: 1 = one hue
    return [share, ent, top, nsec, R]

def eig2(v, wts=None):
    if len(v) < 3:
        return 0.0, 0.0
    c = np.cov(v.T, aweights=wts)
    tr, det = c[0, 0] + c[1, 1], c[0, 0] * c[1, 1] - c[0, 1] ** 2
    d = np.sqrt(max(tr * tr / 4 - det, 0.0))
    return float(np.sqrt(max(tr / 2 + d, 0))), float(np.sqrt(max(tr / 2 - d, 0)))

def features(thumb):
    y, u, v = _yuv(thumb)
    h, w = y.shape
    uv = np.stack([u.ravel(), v.ravel()], 1)
    chroma = np.hypot(uv[:, 0], uv[:, 1])
    f = []
    # today's fit
    left, field, bins = fit(y, uv, LUMA_BINS, 4)
    L = np.hypot(left[:, 0], left[:, 1])
    fm = np.hypot(*(field - field.mean(0)).T)
    f += [chroma.mean(), L.mean(), np.maximum(L - VISIBLE, 0).mean(), fm.mean(), fm.max()]
    f += pct(L, [50, 90, 95, 99, 99.9]) + [L.max()]
    f += [(L > t).mean() for t in (0.02, 0.03, 0.05, 0.08, 0.12)]
    # coherent leftover at several scales
    Lm = left.reshape(h, w, 2)
    for r in (1, 2, 4, 8):
        b = box(Lm, r)
        bm = np.hypot(b[..., 0], b[..., 1]).ravel()
        f += [bm.mean()] + pct(bm, [95, 99]) + [bm.max(), (bm > 0.03).mean()]
    # tiles 4x4: mean leftover and coherent leftover
    b2 = np.hypot(*np.moveaxis(box(Lm, 2), -1, 0))
    Lt = L.reshape(h, w)
    ty = np.linspace(0, h, 5).astype(int); tx = np.linspace(0, w, 5).astype(int)
    tm = np.array([[Lt[ty[i]:ty[i+1], tx[j]:tx[j+1]].mean() for j in range(4)] for i in range(4)]).ravel()
    tb = np.array([[np.percentile(b2[ty[i]:ty[i+1], tx[j]:tx[j+1]], 90) for j in range(4)] for i in range(4)]).ravel()
    tm.sort(); tb.sort()
    f += [tm[-1], tm[-2], tm[-4], tm[0], np.median(tm), tb[-1], tb[-2], tb[-4], tb[0], np.median(tb)]
    # leftover direction structure
    l1, l2 = eig2(left)
    f += [l1, l2, l2 / (l1 + 1e-6)]
    f += hue_stats(left, L, 0.03)
    bl = box(Lm, 2).reshape(-1, 2)
    f += hue_stats(bl, np.hypot(bl[:, 0], bl[:, 1]), 0.02)
    # per-luma-bin spread of chroma (tone-only view)
    s1, s2, wsum, mx2 = 0.0, 0.0, 0.0, 0.0
    for k in range(LUMA_BINS):
        m = bins == k
        n = int(m.sum())
        if n < 20:
            continue
        a, b = eig2(uv[m])
        s1 += n * a; s2 += n * b; wsum += n; mx2 = max(mx2, b)
    f += [s1 / max(wsum, 1), s2 / max(wsum, 1), mx2]
    # raw chroma and hue diversity
    f += pct(chroma, [50, 95, 99]) + [(chroma > t).mean() for t in (0.05, 0.1, 0.2)]
    f += hue_stats(uv, chroma, 0.05)
    c1, c2 = eig2(uv)
    f += [c1, c2, c2 / (c1 + 1e-6)]
    # RGB saturation
    t = thumb.astype(np.float32) / 255.0
    sat = (t.max(-1) - t.min(-1)).ravel()
    f += pct(sat, [50, 95, 99]) + [(sat > 0.1).mean(), (sat > 0.2).mean()]
    # gradients: chroma edges where luma has none
    gy = np.hypot(*np.gradient(y))
    U, V = u, v
    gu = np.gradient(U); gv = np.gradient(V)
    gc = np.sqrt(gu[0] ** 2 + gu[1] ** 2 + gv[0] ** 2 + gv[1] ** 2)
    gl = np.sqrt(sum(g ** 2 for g in np.gradient(Lm[..., 0])) + sum(g ** 2 for g in np.gradient(Lm[..., 1])))
    flat = gy < 0.01
    f += [gc.mean(), gc[flat].mean() if flat.any() else 0.0, np.percentile(gc[gy < 0.02], 99) if (gy < 0.02).sum() > 10 else 0.0,
          float(np.corrcoef(gc.ravel(), gy.ravel())[0, 1]) if gc.std() > 0 and gy.std() > 0 else 0.0,
          gl.mean(), np.percentile(gl, 99), (gl * (gy < 0.02)).mean()]
    # finer fits: what a richer tone/stain model still cannot explain
    for nb, cells in ((32, 4), (16, 8), (16, 0)):
        lf, _, _ = fit(y, uv, nb, cells)
        Lf = np.hypot(lf[:, 0], lf[:, 1])
        f += [Lf.mean(), np.maximum(Lf - VISIBLE, 0).mean(), np.percentile(Lf, 99)]
    return np.nan_to_num(np.asarray(f, np.float64))

if __name__ == "__main__":
    import pickle, time
    src, dst = sys.argv[1], sys.argv[2]
    data = pickle.load(open(src, "rb"))
    t0 = time.time()
    X = np.stack([features(d["thumb"]) for d in data])
    print(X.shape, (time.time() - t0) / len(data) * 1000, "ms/photo")
    np.save(dst, X)
