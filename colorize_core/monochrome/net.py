"""The learned part of the black-and-white-or-colour decision: a tiny convolutional network that
reads a photo's thumbnail and the tone-and-stain fit's leftover colour (fit.py), and gives the
log-odds that the photo is a black-and-white print. A hand-made rule on the fit's leftover took
3.2% of held-out colour photos for prints; the network sees where the leftover lies (a painted
cheek, a tide line, the edge of a red coat): 1.3%, at the same share of prints (QUALITY.md).

Its weights (`weights.pt`, ~210 KB, next to this file) and the threshold that goes with them are
made by bench/train_monochrome.py on the tune split of bench/monochrome_eval.py's labelled set;
nothing is downloaded. The fit and the network take 4-8 ms a photo on a CPU core, in float32 (the score must not
depend on which fast path a CPU has), without gradients, safe to call from several threads.
"""

from __future__ import annotations

import functools
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from colorize_core.monochrome.fit import Fit

SIDE = 96  # the network's input is SIDE x SIDE, the thumbnail resized (not cropped: a corner stain stays in)
CHANNELS = (16, 32, 48, 64)
WEIGHTS = Path(__file__).with_name("weights.pt")


class BlackAndWhiteNet(nn.Module):
    """5 x 96 x 96 (luma, chroma U and V, the fit's leftover U and V) -> one logit: black-and-white
    above 0. Four 3 x 3 convolutions (three with stride 2), mean and max pooled: ~51k parameters."""

    def __init__(self, channels: tuple[int, int, int, int] = CHANNELS) -> None:
        super().__init__()
        c0, c1, c2, c3 = channels
        self.c1, self.b1 = nn.Conv2d(5, c0, 3, 2, 1), nn.BatchNorm2d(c0)
        self.c2, self.b2 = nn.Conv2d(c0, c1, 3, 2, 1), nn.BatchNorm2d(c1)
        self.c3, self.b3 = nn.Conv2d(c1, c2, 3, 2, 1), nn.BatchNorm2d(c2)
        self.c4, self.b4 = nn.Conv2d(c2, c3, 3, 1, 1), nn.BatchNorm2d(c3)
        self.f1, self.f2 = nn.Linear(2 * c3, 32), nn.Linear(32, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, norm in ((self.c1, self.b1), (self.c2, self.b2), (self.c3, self.b3), (self.c4, self.b4)):
            x = F.relu(norm(conv(x)))
        x = torch.cat([x.mean((2, 3)), x.amax((2, 3))], 1)  # mean: how much; max: the strongest patch
        return self.f2(F.relu(self.f1(x)))[:, 0]


def net_input(fit: Fit) -> torch.Tensor:
    """(5, SIDE, SIDE) float32: luma centred, chroma and leftover scaled to about unit range."""
    planes = np.stack([fit.y - 0.5, fit.u * 10, fit.v * 10, fit.left_u * 10, fit.left_v * 10]).astype(np.float32)
    return F.interpolate(torch.from_numpy(planes)[None], size=(SIDE, SIDE), mode="bilinear", align_corners=False)[0]


@dataclass(frozen=True)
class LearnedDecision:
    """A trained network with the threshold chosen for it; `id` names the weights (rows record it)."""

    net: BlackAndWhiteNet
    threshold: float  # logit at or above this: black-and-white
    id: str
    about: dict  # how it was trained: the set, the folds, its cross-validated figures

    def score(self, fit: Fit) -> float:
        with torch.inference_mode():
            return float(self.net(net_input(fit)[None])[0])


def save(path: Path, net: BlackAndWhiteNet, threshold: float, about: dict) -> None:
    torch.save({"state_dict": net.state_dict(), "channels": list(CHANNELS), "threshold": float(threshold), "about": about}, path)


@functools.cache
def load(path: Path = WEIGHTS) -> LearnedDecision:
    """The decision's weights, read once per process (weights_only: a weights file runs no code).
    A missing or damaged file is an installation's fault: one line that says so."""
    try:
        data = path.read_bytes()
        blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        net = BlackAndWhiteNet(tuple(blob["channels"]))
        net.load_state_dict(blob["state_dict"])
    except Exception as exc:  # noqa: BLE001 - OSError, a torch unpickling error, a missing key, wrong shapes
        # The kind of fault only: torch's own text is many lines of advice (to load unsafely) that
        # does not apply to a file that should have come with the package; the chain keeps it.
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise RuntimeError(f"the black-and-white-or-colour decision's weights {path} cannot be read ({why}); reinstall archive-colorizer") from exc
    net.eval()
    digest = hashlib.sha256(data).hexdigest()[:12]
    return LearnedDecision(net, float(blob["threshold"]), f"bw-net {digest}", dict(blob["about"]))
