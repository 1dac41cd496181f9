"""Training data: a folder of colour photos -> random crops and flips at the training size.

Sampling is a pure function of (seed, step): the batch at step k and its augmentations are the
same whether a run got there in one go or resumed from a checkpoint, with any number of
DataLoader workers. A file that fails to decode is reported once and replaced by the next one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from colorize_core.imageio import IMAGE_SUFFIXES, ImageDecodeError, read_image

log = logging.getLogger(__name__)

Item = tuple[int, int]  # (index into the file list, augmentation seed)


def list_images(root: str | os.PathLike[str]) -> list[Path]:
    """Image files under `root` (recursive), in a deterministic order."""
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"training data folder not found: {base}")
    return sorted(p for p in base.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def resize_short_side(img: Image.Image, size: int) -> Image.Image:
    """Scale so the shorter side is `size` (up or down), keeping the aspect ratio."""
    w, h = img.size
    scale = size / min(w, h)
    new = (max(size, round(w * scale)), max(size, round(h * scale)))
    return img.resize(new, Image.Resampling.BICUBIC, reducing_gap=2.0)


def center_crop(img: Image.Image, size: int) -> Image.Image:
    img = resize_short_side(img, size)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> (3, H, W) float in [0, 1]."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


class FolderImages(Dataset[torch.Tensor]):
    """Colour photos in a folder; item (index, seed) -> a random size x size crop, maybe flipped."""

    def __init__(self, root: str | os.PathLike[str], image_size: int, *, cache: bool = True) -> None:
        self.files = list_images(root)
        if not self.files:
            raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
        self.image_size = image_size
        # Photos resized to the training scale are small; caching them skips re-decoding each epoch.
        self._cache: dict[int, Image.Image] | None = {} if cache else None
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, index: int) -> Image.Image:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        # A little room above the crop size lets random crops move across the photo.
        short = round(self.image_size * 1.15)
        img = read_image(self.files[index], draft_size=(short, short))
        img = resize_short_side(img.convert("RGB"), short)
        if self._cache is not None:
            self._cache[index] = img
        return img

    def __getitem__(self, item: Item) -> torch.Tensor:
        index, seed = item
        for attempt in range(len(self.files)):
            i = (index + attempt) % len(self.files)
            if i in self._bad:
                continue
            try:
                img = self._load(i)
                break
            except ImageDecodeError as exc:
                self._bad.add(i)
                log.warning("skipping training image %s", exc)
        else:
            raise ImageDecodeError(str(self.files[index]), "no readable image left in the training folder")
        return self._augment(img, seed)

    def _augment(self, img: Image.Image, seed: int) -> torch.Tensor:
        rng = np.random.default_rng(seed)
        s = self.image_size
        w, h = img.size
        left, top = int(rng.integers(0, w - s + 1)), int(rng.integers(0, h - s + 1))
        crop = img.crop((left, top, left + s, top + s))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return to_tensor(crop)


class StepBatchSampler(Sampler[list[Item]]):
    """Batches for steps [start_step, total_steps): epoch-wise permutations seeded by (seed, epoch),
    and one augmentation seed per sample derived from (seed, step, position)."""

    def __init__(self, n: int, batch_size: int, *, seed: int, start_step: int, total_steps: int) -> None:
        if n <= 0 or batch_size <= 0:
            raise ValueError("need at least one sample and a positive batch size")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start_step, self.total_steps = start_step, total_steps

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)

    def _perm(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def __iter__(self) -> Iterator[list[Item]]:
        cached_epoch, perm = -1, np.empty(0, dtype=np.int64)
        for step in range(self.start_step, self.total_steps):
            batch: list[Item] = []
            for j in range(self.batch_size):
                pos = step * self.batch_size + j
                epoch = pos // self.n
                if epoch != cached_epoch:
                    cached_epoch, perm = epoch, self._perm(epoch)
                aug_seed = int(np.random.SeedSequence([self.seed, step, j]).generate_state(1)[0])
                batch.append((int(perm[pos % self.n]), aug_seed))
            yield batch
