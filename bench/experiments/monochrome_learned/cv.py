"""Cross-validation on the TUNE split only (groups = source photo). Models: HGB, logistic regression,
MLP on features. Threshold: OOF print recall target. Reports tune-list figures (488 colour, 500 b/w)."""
import pickle, sys, json
import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.pipeline import make_pipeline

import os
bankname = sys.argv[1] if (len(sys.argv) > 1 and __name__ == "__main__") else os.environ.get("BANK", "bank_K10_C6")
tune = pickle.load(open("/tmp/mono2/tune_meta.pkl", "rb"))
bank = pickle.load(open(f"/tmp/mono2/{bankname}_meta.pkl", "rb"))
Xt = np.load("/tmp/mono2/X_tune.npy"); Xb = np.load(f"/tmp/mono2/X_{bankname}.npy")
gt = np.array([d["name"].split("#")[0] for d in tune])
gb = np.array([tune[d["group"]]["name"] for d in bank])
yt = np.array([d["truth"] == "monochrome" for d in tune]).astype(int)
yb = np.array([d["truth"] == "monochrome" for d in bank]).astype(int)
names = np.unique(gt)
rng = np.random.default_rng(0)
fold_of = dict(zip(rng.permutation(names), np.arange(len(names)) % 5))
ft = np.array([fold_of[g] for g in gt]); fb = np.array([fold_of[g] for g in gb])
GRAY = 0.004

def logf(X):
    return np.sign(X) * np.log1p(np.abs(X) * 1e3)

def models():
    return {
        "hgb": lambda: HistGradientBoostingClassifier(max_iter=400, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=20, l2_regularization=1.0, class_weight="balanced", random_state=0),
        "logreg": lambda: make_pipeline(StandardScaler(), LogisticRegression(C=0.3, max_iter=5000, class_weight="balanced")),
        "mlp": lambda: make_pipeline(StandardScaler(), MLPClassifier((32,), alpha=1e-2, max_iter=800, early_stopping=False, random_state=0)),
    }

which = sys.argv[2].split(",") if len(sys.argv) > 2 else ["hgb", "logreg", "mlp"]
if __name__ != "__main__": which = []
res = {}
for name in which:
    mk = models()[name]
    st = np.zeros(len(yt)); sb = np.zeros(len(yb))
    for k in range(5):
        tr_t, tr_b = ft != k, fb != k
        X = np.concatenate([Xt[tr_t], Xb[tr_b]]); y = np.concatenate([yt[tr_t], yb[tr_b]])
        X = logf(X) if name != "hgb" else X
        m = mk()
        if name == "mlp":  # no class_weight: balance by resampling colour
            pos, neg = np.where(y == 1)[0], np.where(y == 0)[0]
            idx = np.concatenate([pos, rng.choice(neg, len(pos))])
            m.fit(X[idx], y[idx])
        else:
            m.fit(X, y)
        tf = lambda Z: logf(Z) if name != "hgb" else Z
        st[ft == k] = m.predict_proba(tf(Xt[ft == k]))[:, 1]
        sb[fb == k] = m.predict_proba(tf(Xb[fb == k]))[:, 1]
    st[Xt[:, 0] < GRAY] = 1.0; sb[Xb[:, 0] < GRAY] = 1.0
    prints = np.concatenate([st[yt == 1], sb[yb == 1]])
    out = {}
    for rec in (0.985, 0.9875, 0.99):
        thr = np.quantile(prints, 1 - rec)
        out[f"rec{rec}"] = dict(thr=float(thr),
            tune_prints=f"{int((st[yt==1] >= thr).sum())}/{int((yt==1).sum())}",
            bank_prints=f"{int((sb[yb==1] >= thr).sum())}/{int((yb==1).sum())}",
            tune_colour_fp=f"{int((st[yt==0] >= thr).sum())}/{int((yt==0).sum())}",
            crop_colour_fp=f"{int((sb[yb==0] >= thr).sum())}/{int((yb==0).sum())}")
    res[name] = out
    print(name, json.dumps(out), flush=True)
    np.save(f"/tmp/mono2/oof_{name}_{bankname}.npy", st); np.save(f"/tmp/mono2/oofb_{name}_{bankname}.npy", sb)
