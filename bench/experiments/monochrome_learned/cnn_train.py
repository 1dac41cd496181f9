"""Tiny CNN on 5 x 96 x 96 inputs (luma, UV, today's-fit leftover UV). TUNE split only.
mode=val k: train on tune groups with fold != k (same folds as cv.py), report on fold k.
mode=all: train on all tune groups. Each epoch: one fresh print per colour photo (cycling through the
10 bank prints + the tune print), one colour view (original or one of 6 crops), random flips/crops."""
import pickle, sys, time, json
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F
torch.set_num_threads(1); torch.manual_seed(0)
mode = sys.argv[1]; k = int(sys.argv[2]) if len(sys.argv) > 2 else -1
EPOCHS = int(sys.argv[3]) if len(sys.argv) > 3 else 60
CH = [int(c) for c in (sys.argv[4] if len(sys.argv) > 4 else "16,32,48,64").split(",")]
tune = pickle.load(open("/tmp/mono2/tune_meta.pkl", "rb"))
import os
BANK = os.environ.get("BANK", "bank_K10_C6")
bank = pickle.load(open(f"/tmp/mono2/{BANK}_meta.pkl", "rb"))
Xt = torch.load("/tmp/mono2/cnn_tune.pt").float(); Xb = torch.load("/tmp/mono2/cnn_bank.pt" if BANK == "bank_K10_C6" else "/tmp/mono2/cnn_bank_aug.pt").float()
gt = np.array([d["name"].split("#")[0] for d in tune]); gb = np.array([tune[d["group"]]["name"] for d in bank])
yt = np.array([d["truth"] == "monochrome" for d in tune]).astype(np.float32)
yb = np.array([d["truth"] == "monochrome" for d in bank]).astype(np.float32)
names = np.unique(gt); rng0 = np.random.default_rng(0)
fold_of = dict(zip(rng0.permutation(names), np.arange(len(names)) % 5))
ft = np.array([fold_of[g] for g in gt]); fb = np.array([fold_of[g] for g in gb])
GRAY = 0.004

from cnn_net import Net  # one definition (the scripts run from their folder)

# per-group index lists
trg = set(names) if mode == "all" else {g for g in names if fold_of[g] != k}
col_views, prints, mono_nat = {}, {}, []
for i, d in enumerate(tune):
    g = gt[i]
    if g not in trg: continue
    if d["truth"] == "colour": col_views.setdefault(g, []).append(("t", i))
    elif d["kind"] == "imagenet": mono_nat.append(("t", i))
    else: prints.setdefault(g, []).append(("t", i))
for i, d in enumerate(bank):
    g = gb[i]
    if g not in trg: continue
    (prints if d["truth"] == "monochrome" else col_views).setdefault(g, []).append(("b", i))
def get(lst):
    it = [i for s, i in lst if s == "t"]; ib = [i for s, i in lst if s == "b"]
    return torch.cat([Xt[it], Xb[ib]]), torch.tensor(np.concatenate([yt[it], yb[ib]]))

net = Net(CH)
nparam = sum(p.numel() for p in net.parameters())
opt = torch.optim.AdamW(net.parameters(), 3e-3, weight_decay=1e-4)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=EPOCHS * 32, pct_start=0.15)
rng = np.random.default_rng(1)
def augment(x):
    if rng.random() < 0.5: x = x.flip(3)
    if rng.random() < 0.5: x = x.flip(2)
    c = int(rng.integers(80, 97)); y0, x0 = rng.integers(0, 97 - c, 2)
    return x[:, :, y0:y0 + c, x0:x0 + c]

def scores(X):
    net.eval()
    with torch.no_grad():
        return torch.cat([torch.sigmoid(net(X[i:i + 256])) for i in range(0, len(X), 256)]).numpy()

t0 = time.time(); step = 0
for ep in range(EPOCHS):
    net.train()
    sel = [v[ep % len(v)] if True else None for v in prints.values()]
    sel = [v[(ep + int(rng.integers(0, 1000))) % len(v)] for v in prints.values()]
    sel += [v[int(rng.integers(0, len(v)))] for v in col_views.values()] + mono_nat
    X, Y = get(sel)
    perm = torch.randperm(len(X)); bs = (len(X) + 31) // 32
    for j in range(32):
        idx = perm[j * bs:(j + 1) * bs]
        if len(idx) == 0: continue
        loss = F.binary_cross_entropy_with_logits(net(augment(X[idx])), Y[idx])
        opt.zero_grad(); loss.backward(); opt.step()
        if step < EPOCHS * 32 - 1: sched.step()
        step += 1
    if ep % 10 == 9 or ep == EPOCHS - 1:
        print(ep, round(loss.item(), 4), round(time.time() - t0), flush=True)

tag = f"{mode}{k}_e{EPOCHS}_{'-'.join(map(str, CH))}" + ("" if BANK == "bank_K10_C6" else "_aug")
torch.save(net.state_dict(), f"/tmp/mono2/cnn_{tag}.pt")
print("params", nparam, "bytes", nparam * 4)
if mode == "val":
    vt, vb = ft == k, fb == k
    st = scores(Xt[vt]); sb = scores(Xb[vb])
    rows = [d for d, m in zip(tune, vt) if m]
    st[np.array([r.get("mean_chroma", 1) for r in rows]) < GRAY] = 1.0  # (gray rule applied by caller if needed)
    np.save(f"/tmp/mono2/cnnval_{tag}_st.npy", st); np.save(f"/tmp/mono2/cnnval_{tag}_sb.npy", sb)
    ytv, ybv = yt[vt], yb[vb]
    pr = np.concatenate([st[ytv == 1], sb[ybv == 1]])
    for rec in (0.985, 0.9875, 0.99):
        thr = np.quantile(pr, 1 - rec)
        print(rec, json.dumps(dict(thr=float(thr), tune_prints=f"{int((st[ytv==1]>=thr).sum())}/{int((ytv==1).sum())}",
              bank_prints=f"{int((sb[ybv==1]>=thr).sum())}/{int((ybv==1).sum())}",
              tune_colour_fp=f"{int((st[ytv==0]>=thr).sum())}/{int((ytv==0).sum())}",
              crop_fp=f"{int((sb[ybv==0]>=thr).sum())}/{int((ybv==0).sum())}")))
