"""Training data -> random crops and flips at the training size, as uint8 torch tensors.

Two sources: a folder of colour photos (`FolderImages`), or a dataset built by
`colorize build-dataset` (`ShardImages`: Parquet shards on a local disk or S3, read a shard at a
time). `open_training_data` picks by what the URI holds.

Sampling is a pure function of (seed, step): the batch at step k and its augmentations are the
same whether a run got there in one go or resumed from a checkpoint, with any number of
DataLoader workers. For shards the epoch order is shuffled shard-wise, then row-wise within a
window of a few shards, so each worker keeps only a few shards in memory.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from colorize_core.data.layout import SUMMARY_KEY
from colorize_core.storage.files import image_files
from colorize_core.storage.imageio import IMAGE_SUFFIXES, ImageDecodeError, decode, read_image
from colorize_core.storage.objects import ObjectNotFound
from colorize_core.storage.records import table_from_bytes
from colorize_core.storage.stores import open_store

log = logging.getLogger(__name__)

Item = tuple[int, int]  # (index into the dataset, augmentation seed)
SHUFFLE_WINDOW = 2  # shards whose rows are shuffled together
CONTEXT = 1.15  # a training crop's side is 1/CONTEXT of the sample's short side


def list_image_files(root: str | os.PathLike[str]) -> list[Path]:
    """Image files under a local folder (recursive), in a deterministic order."""
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"training data folder not found: {base}")
    return image_files(base)


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


def to_uint8_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> (3, H, W) uint8: a quarter of float's bytes through worker queues, pinned
    memory and the copy to the GPU; `as_float` there."""
    return torch.from_numpy(np.array(img.convert("RGB"), dtype=np.uint8)).permute(2, 0, 1).contiguous()


def as_float(batch: torch.Tensor) -> torch.Tensor:
    """A uint8 batch from the loader -> float in [0, 1] (on whatever device it now is)."""
    return batch.float().div_(255.0)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> (3, H, W) float in [0, 1]."""
    return as_float(to_uint8_tensor(img))


def random_crop_flip(img: Image.Image, size: int, seed: int) -> torch.Tensor:
    """A size x size uint8 crop at a seeded random place, flipped left-right half the time."""
    if min(img.size) < size:
        img = resize_short_side(img, size)
    rng = np.random.default_rng(seed)
    w, h = img.size
    left, top = int(rng.integers(0, w - size + 1)), int(rng.integers(0, h - size + 1))
    crop = img.crop((left, top, left + size, top + size))
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return to_uint8_tensor(crop)


class FolderImages(Dataset[torch.Tensor]):
    """Colour photos in a local folder. A file that fails to decode is reported once and
    replaced by the next readable one."""

    blocks: Sequence[int] | None = None

    def __init__(self, root: str | os.PathLike[str], image_size: int, *, cache: bool = True) -> None:
        self.files = list_image_files(root)
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
        short = round(self.image_size * CONTEXT)
        img = read_image(self.files[index], draft_size=(short, short))
        img = resize_short_side(img.convert("RGB"), short)
        if self._cache is not None:
            self._cache[index] = img
        return img

    def _first_readable(self, index: int) -> Image.Image:
        for attempt in range(len(self.files)):
            i = (index + attempt) % len(self.files)
            if i in self._bad:
                continue
            try:
                return self._load(i)
            except ImageDecodeError as exc:
                self._bad.add(i)
                log.warning("skipping training image %s", exc)
        raise ImageDecodeError(str(self.files[index]), "no readable image left in the training folder")

    def __getitem__(self, item: Item) -> torch.Tensor:
        index, seed = item
        return random_crop_flip(self._first_readable(index), self.image_size, seed)

    def validation_images(self, count: int) -> torch.Tensor:
        crops = []
        for i in range(min(count, len(self.files))):
            crops.append(to_tensor(center_crop(self._first_readable(i), self.image_size)))
        return torch.stack(crops)


class ShardImages(Dataset[torch.Tensor]):
    """A dataset built by `build-dataset` (local or s3://): rows of its Parquet shards, read a
    shard at a time and kept in a small per-process cache."""

    def __init__(self, uri: str, image_size: int, *, cached_shards: int = SHUFFLE_WINDOW + 1) -> None:
        self.uri = uri
        self.image_size = image_size
        store = open_store(uri)
        try:
            summary = json.loads(store.read(SUMMARY_KEY))
        except ObjectNotFound:
            raise FileNotFoundError(f"{uri} has no summary.json: not a dataset built by `colorize build-dataset`") from None
        self.stored_size = int(summary["size"])
        if self.stored_size < image_size:
            log.warning("dataset samples are %d px, training at %d px upsamples them", self.stored_size, image_size)
        shards = [(key, int(n)) for key, n in sorted(summary["shards"].items()) if int(n) > 0]
        if not shards:
            raise FileNotFoundError(f"{uri}: the dataset has no training rows")
        self.shard_keys = [k for k, _ in shards]
        self.blocks: Sequence[int] | None = [n for _, n in shards]
        self.offsets = np.cumsum([0, *self.blocks]).tolist()
        self._cache: OrderedDict[int, pa.Array] = OrderedDict()
        self._cached_shards = cached_shards

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _images(self, shard: int) -> pa.Array:
        if shard in self._cache:
            self._cache.move_to_end(shard)
            return self._cache[shard]
        data = open_store(self.uri).read(self.shard_keys[shard])
        images = table_from_bytes(data, columns=["image"]).column("image").combine_chunks()
        self._cache[shard] = images
        if len(self._cache) > self._cached_shards:
            self._cache.popitem(last=False)
        return images

    def _image(self, index: int) -> Image.Image:
        shard = bisect.bisect_right(self.offsets, index) - 1
        data = self._images(shard)[index - self.offsets[shard]].as_py()
        return decode(data, name=f"{self.shard_keys[shard]}[{index - self.offsets[shard]}]").convert("RGB")

    def __getitem__(self, item: Item) -> torch.Tensor:
        index, seed = item
        # Crops cover most of the photo at the training scale, as inference sees whole photos.
        img = self._image(index)
        target = round(self.image_size * CONTEXT)
        if abs(min(img.size) - target) > 0.03 * target:
            # Not for 256 px samples at 224 (258 wanted): that resample was 2/3 of the loader's time.
            img = resize_short_side(img, target)
        return random_crop_flip(img, self.image_size, seed)

    def validation_images(self, count: int) -> torch.Tensor:
        return torch.stack([to_tensor(center_crop(self._image(i), self.image_size)) for i in range(min(count, len(self)))])


def open_training_data(uri: str, image_size: int) -> FolderImages | ShardImages:
    """A built dataset (has summary.json; local or s3://) or a local folder of photos."""
    if uri.startswith("s3://") or open_store(uri).exists(SUMMARY_KEY):
        return ShardImages(uri, image_size)
    return FolderImages(uri, image_size)


class StepBatchSampler(Sampler[list[Item]]):
    """Batches for steps [start_step, total_steps): epoch-wise permutations seeded by (seed, epoch),
    and one augmentation seed per sample derived from (seed, step, position). With `blocks` (rows
    per shard) an epoch visits shards in random order, shuffling rows within `window` shards."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        seed: int,
        start_step: int,
        total_steps: int,
        blocks: Sequence[int] | None = None,
        window: int = SHUFFLE_WINDOW,
    ) -> None:
        if n <= 0 or batch_size <= 0:
            raise ValueError("need at least one sample and a positive batch size")
        if blocks is not None and sum(blocks) != n:
            raise ValueError(f"blocks add up to {sum(blocks)}, not {n}")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start_step, self.total_steps = start_step, total_steps
        self.blocks, self.window = blocks, window

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)

    def _perm(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        if self.blocks is None:
            return rng.permutation(self.n)
        starts = np.cumsum([0, *self.blocks[:-1]])
        order = rng.permutation(len(self.blocks))
        parts = []
        for w in range(0, len(order), self.window):
            rows = np.concatenate([np.arange(starts[b], starts[b] + self.blocks[b]) for b in order[w : w + self.window]])
            parts.append(rng.permutation(rows))
        return np.concatenate(parts)

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
