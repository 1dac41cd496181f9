"""Per-photo cost on one core: features (numpy), logreg / hgb inference (numpy), CNN prep + forward (torch, 1 thread)."""
import pickle, sys, time
import numpy as np, torch
torch.set_num_threads(1)
sys.path.insert(0, "/tmp/mono2"); sys.path.insert(0, "/work/main")
from features import features
from model_np import logreg_logit, hgb_logit
from cnn_prep import prep
from cnn_net import Net
from colorize_core.monochrome.fit import measure
d = pickle.load(open("/tmp/mono2/tune_meta.pkl", "rb"))
th = [x["thumb"] for x in pickle.load(open("/tmp/mono2/tune.pkl", "rb"))[:200]]
lr = dict(np.load("/tmp/mono2/final_logreg.npz")); hg = dict(np.load("/tmp/mono2/final_hgb.npz"))
net = Net(); net.load_state_dict(torch.load("/tmp/mono2/cnn_all-1_e60_16-32-48-64.pt")); net.eval()
def t(fn):
    t0 = time.perf_counter(); out = [fn(x) for x in th]; return (time.perf_counter() - t0) / len(th) * 1000, out
print("today's measure  %.2f ms" % t(measure)[0])
ms, F = t(features); print("features        %.2f ms" % ms)
t0 = time.perf_counter(); [logreg_logit(lr, f) for f in F]; print("logreg (numpy)  %.3f ms" % ((time.perf_counter() - t0) / len(F) * 1000))
t0 = time.perf_counter(); [hgb_logit(hg, f) for f in F]; print("hgb (numpy)     %.3f ms" % ((time.perf_counter() - t0) / len(F) * 1000))
ms, P = t(prep); print("cnn prep (fit+resize) %.2f ms" % ms)
with torch.no_grad():
    for x in P[:10]: net(x[None])
    t0 = time.perf_counter(); z1 = [float(net(x[None])[0]) for x in P]; print("cnn forward     %.2f ms" % ((time.perf_counter() - t0) / len(P) * 1000))
    z2 = [float(net(x[None])[0]) for x in P]; print("deterministic:", z1 == z2)
print("cnn weights bytes", sum(p.numel() for p in net.parameters()) * 4, "(+BN stats)", sum(b.numel() for b in net.buffers()) * 4)
