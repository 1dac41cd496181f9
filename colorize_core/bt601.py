"""BT.601's luma weights and YUV chroma ranges: plain numbers, no torch, so that image I/O
(storage/), the colour check (monochrome/) and the model's colour space (model/color.py) share
them without the lower layers importing the model."""

from __future__ import annotations

# The same weights PIL uses for mode "L", so "gray level" means one thing here.
KR, KG, KB = 0.299, 0.587, 0.114
U_MAX = 0.436
V_MAX = 0.615
