"""Cache the labelled set of bench/monochrome_eval.py: tune split (512 px photos kept so that fresh
prints can be made) and held-out split (128 px thumbnails only, in a separate file, opened only for
the final evaluation)."""
import pickle, sys
from dataclasses import asdict
from pathlib import Path
import numpy as np
from PIL import Image
sys.path.insert(0, "/work/main")
from bench.monochrome_eval import labelled_set
from bench.common import SHARED
from colorize_core.monochrome.fit import thumbnail

tune, held = [], []
for item, rgb in labelled_set(SHARED, None, 1):
    d = asdict(item)
    d["thumb"] = thumbnail(Image.fromarray(rgb))
    if item.split == "tune":
        if item.kind == "imagenet":
            d["rgb512"] = rgb
        tune.append(d)
    else:
        held.append(d)
pickle.dump(tune, open("/tmp/mono2/tune.pkl", "wb"), protocol=5)
pickle.dump(held, open("/tmp/mono2/heldout.pkl", "wb"), protocol=5)
print(len(tune), len(held))
