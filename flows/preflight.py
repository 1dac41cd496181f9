"""A command's arguments, checked before anything slow starts (the temporary Prefect server,
torch): a path that does not exist, a destination inside its source or holding it, a size the
model cannot use. Each fails in well under a second with one line in the command's own words and exit
status 1, the status of every usage error.

Local paths are checked here; s3:// locations are left to the command (a round trip to the
object store is not a cheap check), which fails on them with the same status.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from colorize_core.archive.layout import overlap
from colorize_core.storage.stores import open_store

# The model's inputs are multiples of 8 (VGG16's three poolings down to conv4_3), so its smallest
# working size is 8; training reads a sample at round(size * CONTEXT) (data/dataset.py: a crop
# is 1/CONTEXT of a sample's side), so the smallest sample that holds the smallest crop is 9.
MIN_WORKING_SIZE = 8
MIN_SAMPLE_SIZE = 9  # round(MIN_WORKING_SIZE * dataset.CONTEXT); tests/test_cli_checks.py checks it


class UsageError(ValueError):
    """A command's arguments cannot work: exit status 1, one line, nothing started."""


def _local(uri: str) -> Path | None:
    """The local path a location names (a path or file://), or None for s3://."""
    try:
        store = open_store(uri)
    except ValueError as exc:  # an unsupported scheme
        raise UsageError(str(exc)) from None
    return store.local_path()


def _folder(uri: str, what: str, hint: str = "") -> None:
    path = _local(uri)
    if path is not None and not path.is_dir():
        raise UsageError(f"{what} {uri} is a file, not a folder" if path.exists() else f"{what} not found: {uri}{hint}")


def _file(uri: str, what: str, hint: str = "") -> None:
    path = _local(uri)
    if path is not None and not path.is_file():
        raise UsageError(f"{what} {uri} is a folder, not a file" if path.exists() else f"{what} not found: {uri}{hint}")


def _checkpoint(spec: str | None) -> None:
    """A checkpoint file must exist; `latest` must resolve through the local registry."""
    if not spec:
        return  # argparse already asked for one where it is required
    if spec == "latest":
        from colorize_core.training.registry import resolve_checkpoint

        try:
            spec = resolve_checkpoint(spec)
        except FileNotFoundError as exc:
            raise UsageError(str(exc)) from None
    _file(spec, "checkpoint")


def _at_least(value: float | None, low: float, flag: str, why: str = "") -> None:
    if value is not None and value < low:
        raise UsageError(f"{flag} {value} is out of range: it must be at least {low}{why}")


def _apart(dest: str, source: str, what: str) -> None:
    """Neither `dest` nor `source` may hold the other (archive/layout.py `overlap` says why)."""
    try:
        problem = overlap(source, dest)
    except ValueError as exc:  # a scheme no store supports
        raise UsageError(str(exc)) from None
    if problem is not None:
        raise UsageError(f"{what} {dest} {problem} {source}: choose a folder apart from it")


def _images(args: argparse.Namespace) -> None:
    for raw in args.inputs:
        path = Path(raw)
        if not path.exists():
            raise UsageError(f"input not found: {raw}")
        out = Path(args.out).resolve()
        if path.is_dir():
            _apart(args.out, raw, "output folder")
        elif (out / path.name).resolve() == path.resolve():
            raise UsageError(f"output folder {args.out} holds the input {raw}: its output would overwrite it; choose another folder")
    _checkpoint(args.checkpoint)
    _at_least(args.batch_size, 1, "--batch-size")
    _signing(args)


def _train(args: argparse.Namespace) -> None:
    from colorize_core.training.train_params import TRAIN_PARAMS, to_train_config

    _folder(args.data, "training data", " (a dataset from build-dataset, or a folder of colour photos)")
    _multiple_of_8(args.image_size)
    if args.val_data:
        _folder(args.val_data, "validation photos folder")
    try:  # the flow's own checks (sizes, steps, choices), made before its server starts
        to_train_config(args.data, args.out, {p.name: getattr(args, p.name) for p in TRAIN_PARAMS})
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _eval(args: argparse.Namespace) -> None:
    _folder(args.data, "evaluation photos folder")
    _checkpoint(args.checkpoint)
    _at_least(args.limit, 1, "--limit")


def _shard(args: argparse.Namespace) -> None:
    _folder(args.source, "archive")
    _at_least(args.shard_size, 1, "--shard-size")


def _build_dataset(args: argparse.Namespace) -> None:
    if args.source.lower().endswith(".parquet"):
        _file(args.source, "manifest", " (from `colorize shard`)")
    else:
        _folder(args.source, "colour photos folder")
    why = f": the model's smallest input is {MIN_WORKING_SIZE} px and training crops a sample to 1/1.15 of its side"
    _at_least(args.size, MIN_SAMPLE_SIZE, "--size", why)
    _at_least(args.shard_size, 1, "--shard-size")


def _archive(args: argparse.Namespace) -> None:
    _folder(args.source, "archive")
    if getattr(args, "inventory", None):
        if _local(args.source) is not None:  # a report lists a bucket, never a local folder
            raise UsageError(f"--inventory takes the listing of an s3:// archive from its S3 Inventory report; {args.source} is a local folder: leave out --inventory")
        _file(args.inventory, "inventory manifest")
    _apart(args.dest, args.source, "destination")
    _checkpoint(args.checkpoint)
    _at_least(args.shard_size, 1, "--shard-size")
    _at_least(args.batch_size, 1, "--batch-size")
    _at_least(args.workers, 1, "--workers")
    _at_least(args.wait, 0, "--wait")
    _at_least(args.time_limit, 0.01, "--time-limit", " hours")
    _at_least(args.pool_workers, 1, "--pool-workers")
    _signing(args)


def _status(args: argparse.Namespace) -> None:
    _folder(args.dest, "destination")


def _multiple_of_8(image_size: int) -> None:
    if image_size < MIN_WORKING_SIZE or image_size % MIN_WORKING_SIZE:
        raise UsageError(f"--image-size {image_size} is out of range: the model takes positive multiples of {MIN_WORKING_SIZE}")


def _demo(args: argparse.Namespace) -> None:
    _multiple_of_8(args.image_size)
    _at_least(args.seconds, 0, "--seconds")


def _signing(args: argparse.Namespace) -> None:
    """--c2pa-cert and --c2pa-key together, and an identity that can sign now: a bad or expired
    certificate stops the command here, in one line, before any output is written."""
    if not (args.c2pa_cert or args.c2pa_key):
        if args.c2pa_tsa:
            raise UsageError("--c2pa-tsa times signatures: give --c2pa-cert and --c2pa-key too")
        return
    if not (args.c2pa_cert and args.c2pa_key):
        raise UsageError("give --c2pa-cert and --c2pa-key together (or COLORIZE_C2PA_CERT and COLORIZE_C2PA_KEY)")
    for path, flag in ((args.c2pa_cert, "--c2pa-cert"), (args.c2pa_key, "--c2pa-key")):
        if "://" in path:
            raise UsageError(f"{flag} takes a local file (the key is never read from object storage): {path}")
    from colorize_core.storage.credentials import CredentialsError, load_identity

    try:
        load_identity(args.c2pa_cert, args.c2pa_key, args.c2pa_tsa)
    except CredentialsError as exc:
        raise UsageError(str(exc)) from None


def _verify(args: argparse.Namespace) -> None:
    for path in args.paths:
        if not Path(path).exists():
            raise UsageError(f"{path} does not exist")
    if args.trust:
        _file(args.trust, "trusted authorities file (PEM)")
        if b"-----BEGIN CERTIFICATE-----" not in Path(args.trust).read_bytes():
            raise UsageError(f"--trust {args.trust} holds no PEM certificate (-----BEGIN CERTIFICATE-----); convert a DER one with `openssl x509 -inform der`")


CHECKS: dict[str, Callable[[argparse.Namespace], None]] = {
    "images": _images,
    "train": _train,
    "eval": _eval,
    "shard": _shard,
    "build-dataset": _build_dataset,
    "archive": _archive,
    "status": _status,
    "demo": _demo,
    "verify": _verify,
}


def check_arguments(args: argparse.Namespace) -> None:
    """Raise `UsageError` if the command's arguments cannot work (nothing is started here)."""
    check = CHECKS.get(args.command)
    if check is not None:
        check(args)
