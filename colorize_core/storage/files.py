"""Photos in local folders: the one recursive listing of a folder's image files (the `images`
command, training data, CPU calibration photos), and the photographs scikit-image ships (the
demo's data set and the default calibration set, offline)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from colorize_core.storage.imageio import IMAGE_SUFFIXES


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files under `folder` (recursive, by suffix), in a deterministic order."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def bundled_photos(names: Sequence[str]) -> list[Path]:
    """Those of `names` that the installed scikit-image ships in its data folder."""
    import skimage  # only when asked: its import costs a second

    data = Path(skimage.__file__).parent / "data"
    return [data / name for name in names if (data / name).is_file()]
