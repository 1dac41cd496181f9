"""ONE evaluation of a final candidate on the HELD-OUT split (numpy / torch only; no scikit-learn).
Candidates: logreg, hgb, cnn, or '+'-joined (mean logit). Threshold fixed beforehand from tune OOF.
Every call is appended to /tmp/mono2/heldout_log.txt (so the number of held-out looks is on record)."""
import pickle, sys, json, time, os
from collections import Counter, defaultdict
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F
torch.set_num_threads(1)
sys.path.insert(0, "/tmp/mono2")
from model_np import logreg_logit, hgb_logit
cand = sys.argv[1]; thr = float(sys.argv[2]); cnn_w = sys.argv[3] if len(sys.argv) > 3 else "/tmp/mono2/cnn_all-1_e60_16-32-48-64.pt"
held = pickle.load(open("/tmp/mono2/heldout.pkl", "rb"))
if not os.path.exists("/tmp/mono2/X_heldout.npy"):
    from features import features
    np.save("/tmp/mono2/X_heldout.npy", np.stack([features(d["thumb"]) for d in held]))
X = np.load("/tmp/mono2/X_heldout.npy")

from cnn_net import Net  # one definition (the scripts run from their folder)

parts = cand.split("+"); logits = []
for p in parts:
    if p == "logreg":
        d = dict(np.load("/tmp/mono2/final_logreg.npz")); logits.append(np.array([logreg_logit(d, x) for x in X]))
    elif p == "hgb":
        d = dict(np.load("/tmp/mono2/final_hgb.npz")); logits.append(np.array([hgb_logit(d, x) for x in X]))
    elif p == "cnn":
        from cnn_prep import prep
        net = Net(); net.load_state_dict(torch.load(cnn_w)); net.eval()
        with torch.no_grad():
            logits.append(np.array([float(net(prep(d["thumb"])[None])[0]) for d in held]))
z = np.mean(logits, 0)
mono = (z >= thr) | (X[:, 0] < 0.004)
truth = np.array([d["truth"] == "monochrome" for d in held])
cm = Counter((("monochrome" if t else "colour") + " as " + ("monochrome" if m else "colour")) for t, m in zip(truth, mono))
bykind = defaultdict(lambda: [0, 0])
for d, m in zip(held, mono):
    k = d["kind"] if d["truth"] == "colour" else ("aged" if d["kind"].startswith("aged") else d["kind"]) + "(b/w)"
    bykind[k][0] += int(m); bykind[k][1] += 1
res = dict(candidate=cand, thr=thr, cnn=cnn_w if "cnn" in parts else None, confusion=dict(cm),
           prints_colorized=f"{mono[truth].sum()}/{truth.sum()} = {mono[truth].mean():.4f}",
           colour_taken_for_bw=f"{mono[~truth].sum()}/{(~truth).sum()} = {mono[~truth].mean():.4f}",
           judged_bw_by_kind={k: f"{a}/{n}" for k, (a, n) in sorted(bykind.items())}, time=time.strftime("%H:%M:%S"))
print(json.dumps(res, indent=1))
open("/tmp/mono2/heldout_log.txt", "a").write(json.dumps(res) + "\n")
