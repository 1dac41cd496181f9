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

class Net(nn.Module):
    def __init__(s, ch=(16, 32, 48, 64)):
        super().__init__()
        c0, c1, c2, c3 = ch
        s.c1 = nn.Conv2d(5, c0, 3, 2, 1); s.b1 = nn.BatchNorm2d(c0)
        s.c2 = nn.Conv2d(c0, c1, 3, 2, 1); s.b2 = nn.BatchNorm2d(c1)
        s.c3 = nn.Conv2d(c1, c2, 3, 2, 1); s.b3 = nn.BatchNorm2d(c2)
        s.c4 = nn.Conv2d(c2, c3, 3, 1, 1); s.b4 = nn.BatchNorm2d(c3)
        s.f1 = nn.Linear(2 * c3, 32); s.f2 = nn.Linear(32, 1)
    def forward(s, x):
        x = F.relu(s.b1(s.c1(x))); x = F.relu(s.b2(s.c2(x))); x = F.relu(s.b3(s.c3(x))); x = F.relu(s.b4(s.c4(x)))
        x = torch.cat([x.mean((2, 3)), x.amax((2, 3))], 1)
        return s.f2(F.relu(s.f1(x)))[:, 0]

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
