"""Final feature models trained on ALL of the tune split (tune items + bank); exported to plain arrays
(npz) so inference needs numpy only. Thresholds: OOF (cv.py) quantile at tune print recall REC."""
import pickle, sys
import numpy as np
sys.path.insert(0, "/tmp/mono2")
from cv import logf, models, Xt, Xb, yt, yb, bankname
SUF = "" if bankname == "bank_K10_C6" else "_aug"  # same data, same model recipes
REC = 0.9875
X = np.concatenate([Xt, Xb]); y = np.concatenate([yt, yb])
lg = lambda p: np.log(np.clip(p, 1e-6, 1 - 1e-6) / (1 - np.clip(p, 1e-6, 1 - 1e-6)))
for name in ("logreg", "hgb"):
    st = np.load(f"/tmp/mono2/oof_{name}_{bankname}.npy"); sb = np.load(f"/tmp/mono2/oofb_{name}_{bankname}.npy")
    st[Xt[:, 0] < 0.004] = 1; sb[Xb[:, 0] < 0.004] = 1
    thr_logit = float(np.quantile(lg(np.concatenate([st[yt == 1], sb[yb == 1]])), 1 - REC))
    m = models()[name]()
    if name == "logreg":
        m.fit(logf(X), y)
        sc, lr = m[0], m[1]
        np.savez(f"/tmp/mono2/final_logreg{SUF}.npz", mean=sc.mean_, scale=sc.scale_, coef=lr.coef_[0], intercept=lr.intercept_, thr_logit=thr_logit)
        z = ((logf(X) - sc.mean_) / sc.scale_) @ lr.coef_[0] + lr.intercept_[0]
        print(name, "export check", np.abs(z - lg(m.predict_proba(logf(X))[:, 1])).max(), "thr_logit", thr_logit)
    else:
        m.fit(X, y)
        nodes = [p[0].nodes for p in m._predictors]
        off = np.cumsum([0] + [len(n) for n in nodes])[:-1]
        allnodes = np.concatenate(nodes)
        np.savez(f"/tmp/mono2/final_hgb{SUF}.npz", value=allnodes["value"], feature=allnodes["feature_idx"].astype(np.int32),
                 threshold=allnodes["num_threshold"], left=allnodes["left"].astype(np.int32), right=allnodes["right"].astype(np.int32),
                 leaf=allnodes["is_leaf"].astype(bool), missing_left=allnodes["missing_go_to_left"].astype(bool), roots=off.astype(np.int32),
                 baseline=np.asarray(m._baseline_prediction).ravel(), thr_logit=thr_logit)
        from model_np import hgb_logit
        d = dict(np.load(f"/tmp/mono2/final_hgb{SUF}.npz"))
        z = np.array([hgb_logit(d, x) for x in X[:300]])
        print(name, "export check", np.abs(z - m._raw_predict(X[:300])[:, 0]).max(), "trees", len(nodes), "nodes", len(allnodes), "thr_logit", thr_logit)
