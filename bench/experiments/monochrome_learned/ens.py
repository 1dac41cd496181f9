"""Tune-split OOF figures of the CNN and of ensembles (mean logit) with the feature models."""
import pickle, sys, json
import numpy as np
tag = sys.argv[1] if len(sys.argv) > 1 else "e60_16-32-48-64"
tune = pickle.load(open("/tmp/mono2/tune_meta.pkl", "rb")); import os
BANK = os.environ.get("BANK", "bank_K10_C6")
bank = pickle.load(open(f"/tmp/mono2/{BANK}_meta.pkl", "rb"))
Xt = np.load("/tmp/mono2/X_tune.npy"); Xb = np.load(f"/tmp/mono2/X_{BANK}.npy")
gt = np.array([d["name"].split("#")[0] for d in tune]); gb = np.array([tune[d["group"]]["name"] for d in bank])
yt = np.array([d["truth"] == "monochrome" for d in tune]); yb = np.array([d["truth"] == "monochrome" for d in bank])
names = np.unique(gt); rng0 = np.random.default_rng(0)
fold_of = dict(zip(rng0.permutation(names), np.arange(len(names)) % 5))
ft = np.array([fold_of[g] for g in gt]); fb = np.array([fold_of[g] for g in gb])
st = np.zeros(len(yt)); sb = np.zeros(len(yb))
for k in range(5):
    st[ft == k] = np.load(f"/tmp/mono2/cnnval_val{k}_{tag}_st.npy"); sb[fb == k] = np.load(f"/tmp/mono2/cnnval_val{k}_{tag}_sb.npy")
lg = lambda p: np.log(np.clip(p, 1e-6, 1 - 1e-6) / (1 - np.clip(p, 1e-6, 1 - 1e-6)))
S = {"cnn": (st, sb)}
for n in ("hgb", "logreg"):
    try: S[n] = (np.load(f"/tmp/mono2/oof_{n}_{BANK}.npy"), np.load(f"/tmp/mono2/oofb_{n}_{BANK}.npy"))
    except FileNotFoundError: pass
combos = {k: [k] for k in S}
if "logreg" in S: combos.update({"cnn+logreg": ["cnn", "logreg"], "cnn+hgb": ["cnn", "hgb"], "cnn+hgb+logreg": ["cnn", "hgb", "logreg"], "hgb+logreg": ["hgb", "logreg"]})
np.save(f"/tmp/mono2/oof_cnn_{tag}_st.npy", st); np.save(f"/tmp/mono2/oof_cnn_{tag}_sb.npy", sb)
for name, parts in combos.items():
    a = np.mean([lg(S[p][0]) for p in parts], 0); b = np.mean([lg(S[p][1]) for p in parts], 0)
    a[Xt[:, 0] < 0.004] = 99; b[Xb[:, 0] < 0.004] = 99
    pr = np.concatenate([a[yt], b[yb]])
    out = {}
    for rec in (0.985, 0.9875, 0.99):
        thr = np.quantile(pr, 1 - rec)
        out[rec] = f"thr={thr:.3f} prints {int((a[yt]>=thr).sum())}/{yt.sum()} bank {int((b[yb]>=thr).sum())}/{yb.sum()} colour {int((a[~yt]>=thr).sum())}/{(~yt).sum()} crops {int((b[~yb]>=thr).sum())}/{(~yb).sum()}"
    print(name, json.dumps(out))
