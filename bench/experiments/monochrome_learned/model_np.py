"""numpy-only inference of the exported models."""
import numpy as np
def logf(X):
    return np.sign(X) * np.log1p(np.abs(X) * 1e3)
def logreg_logit(d, x):
    return float(((logf(x) - d["mean"]) / d["scale"]) @ d["coef"] + d["intercept"][0])
def hgb_logit(d, x):
    s = float(d["baseline"][0])
    feat, thr, left, right, leaf, val, ml = d["feature"], d["threshold"], d["left"], d["right"], d["leaf"], d["value"], d["missing_left"]
    for r in d["roots"]:
        n = int(r)
        while not leaf[n]:
            xv = x[feat[n]]
            go_left = ml[n] if np.isnan(xv) else xv <= thr[n]
            n = int(r + (left[n] if go_left else right[n]))
        s += float(val[n])
    return s
