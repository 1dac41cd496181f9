"""Colorize files on a local disk: inputs (files or folders) -> one output per input.

A bad input never stops the batch: it becomes a failed `FileResult` with the reason, and every
other output is still written (atomically, so no half-written image is ever left behind).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from colorize_core.archive.reasons import not_signed
from colorize_core.archive.steps import signed
from colorize_core.model.infer import Colorizer, batched
from colorize_core.storage.atomic import atomic_write_bytes
from colorize_core.storage.files import image_files
from colorize_core.storage.credentials import ContentSigner, Origin
from colorize_core.storage.imageio import ImageDecodeError, decode, encode, output_format_for, output_name_for, read_file
from colorize_core.storage.provenance import Provenance


@dataclass(frozen=True)
class FileResult:
    source: str
    output: str | None
    ok: bool
    error: str = ""
    seconds: float = 0.0
    credentials: str | None = None  # with a signer: "signed" or "unsigned: <why>" (archive/reasons.py)


def expand_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[tuple[Path, Path]]:
    """(source file, output path relative to the output folder) for each input; folders recurse
    and keep their relative layout, files keep their own name."""
    pairs: list[tuple[Path, Path]] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            for f in image_files(p):
                pairs.append((f, f.relative_to(p)))
        else:
            pairs.append((p, Path(p.name)))  # one that vanished since it was named still gets a result: failed, with the reason
    return pairs


def colorize_files(
    pairs: list[tuple[Path, Path]],
    out_dir: str | os.PathLike[str],
    colorizer: Colorizer,
    *,
    on_result: Callable[[FileResult], None] | None = None,
    label: bool = True,
    signer: ContentSigner | None = None,
) -> list[FileResult]:
    """Colorize every (source, relative output) pair from `expand_inputs` into `out_dir`;
    returns one result per input, in input order. `label`: each output's metadata says a trained
    model colorized it, with the model id and the source's relative path, and keeps the source's
    EXIF (storage/provenance.py); False writes bare outputs. `signer`: each output carries
    Content Credentials, signed last (storage/credentials.py)."""
    results: list[FileResult] = []
    for result in _iter_results(pairs, Path(out_dir), colorizer, label, signer):
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def _read(src: Path, rel: Path, model_id: str, signing: bool) -> tuple[Image.Image, Origin | None]:
    """A source decoded, and, when its output is to be signed, its origin (hashed from the same
    bytes); a missing or unreadable file is an `ImageDecodeError` as `read_image` makes it."""
    data = read_file(src)
    img = decode(data, name=str(src), keep_exif=True)
    return img, Origin.of(rel.as_posix(), data, model_id) if signing else None


def _iter_results(pairs: list[tuple[Path, Path]], out_dir: Path, colorizer: Colorizer, label: bool, signer: ContentSigner | None) -> Iterator[FileResult]:
    seen: set[Path] = set()
    for chunk in batched(pairs, colorizer.batch_size):
        started = time.perf_counter()
        decoded, failed = [], {}
        for src, rel in chunk:
            out = out_dir / output_name_for(str(rel))
            if out in seen:
                failed[src] = FileResult(str(src), None, False, f"output name {out} is already taken by another input")
                continue
            seen.add(out)
            try:
                decoded.append((src, rel, out, *_read(src, rel, colorizer.model_id, signer is not None)))
            except ImageDecodeError as exc:
                failed[src] = FileResult(str(src), None, False, exc.reason)
        # 16-bit sources give 16-bit outputs (TIFF, PNG): a preservation master keeps its gray levels.
        images = colorizer.colorize_keeping_depth([img for _, _, _, img, _ in decoded]) if decoded else []
        # Only the sources' EXIF (and origin) are needed from here: their pixels go before the
        # encodes (a 100 MP 16-bit scan holds 200 MB).
        targets = [(src, rel, out, img.info.get("source_exif"), origin) for src, rel, out, img, origin in decoded]
        del decoded
        per_image = (time.perf_counter() - started) / max(len(chunk), 1)
        done: dict[Path, FileResult] = {}
        for (src, rel, out, exif, origin), colored in zip(targets, images):
            # The relative path names the source: an absolute one would leak the user's folders.
            provenance = Provenance(colorizer.model_id, rel.as_posix(), exif) if label else None
            fmt = output_format_for(out.name)
            try:
                data, credentials = signed(encode(colored, fmt, provenance), fmt.pil_format, origin, signer)
            except Exception as exc:  # noqa: BLE001 - not written unsigned when it was to be signed
                done[src] = FileResult(str(src), None, False, not_signed(exc), per_image)
                continue
            try:
                atomic_write_bytes(out, data)
                done[src] = FileResult(str(src), str(out), True, "", per_image, credentials)
            except (OSError, ValueError) as exc:
                done[src] = FileResult(str(src), None, False, f"cannot write {out}: {exc}", per_image)
        for src, _ in chunk:
            yield failed.get(src) or done[src]
