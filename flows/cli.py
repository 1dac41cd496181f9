"""The `colorize` command line: images, train, eval, shard, build-dataset, archive, status, models,
serve, demo.

Exit statuses: flows/exits.py (`EXIT_STATUSES`), shown by `colorize --help`.
"""

from __future__ import annotations

# Only light imports here: `colorize --help` and a mistyped option must answer at once. torch,
# Prefect and the library load inside the commands that use them.
import argparse
import contextlib
import json
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from colorize_core.archive.config import CUDA_SHARD_SIZE, DEFAULT_SHARD_SIZE
from colorize_core.archive.vocabulary import COLOUR_PHOTOS, STATUS_WORDS
from colorize_core.data.config import DEFAULT_SAMPLE_SIZE
from colorize_core.settings import (
    C2PA_CERT, C2PA_KEY, C2PA_TSA, CHECKPOINT, HOME, SERVE_CHECKPOINT, SERVE_DATASET, SERVE_DEST, SERVE_PHOTOS, SERVE_SOURCE, Settings, SettingsError,
)  # fmt: skip
from colorize_core.model.defaults import BATCH_SIZE_HELP
from colorize_core.training.train_params import TRAIN_PARAMS, default
from flows.exits import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, EXIT_SIGINT, EXIT_SIGTERM, exit_status, exit_status_help, install_signal_handlers, one_line


class _Parser(argparse.ArgumentParser):
    # argparse exits 2 on usage errors; here 2 means "some inputs failed", so usage errors are 1.
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows an option's default where there is one worth showing: not on required options or
    positionals, not for on/off flags or None, not when the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.required or not action.option_strings or action.nargs == 0 or action.default in (None, argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


def _epilog(env: Settings) -> str:
    import textwrap

    home = (
        f"${HOME} ({env.home} here) holds the model registry (registry/: `colorize models` "
        "lists it, `--checkpoint latest` reads it) and the log file (logs/colorize.log)."
    )
    return "\n".join(textwrap.fill(text, 88) for text in (home, exit_status_help()))


def _device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")


def _checkpoint_arg(p: argparse.ArgumentParser, required: bool, env: Settings) -> None:
    p.add_argument(
        "--checkpoint",
        default=env.checkpoint,
        required=required and not env.checkpoint,
        help=f"model file from `colorize train` (default: ${CHECKPOINT})",
    )


def _output_args(p: argparse.ArgumentParser, env: Settings) -> None:
    p.add_argument("--allow-untrained", action="store_true", help="colorize even with a model that never trained (0 steps): its colours are noise")
    p.add_argument(
        "--no-label", dest="label", action="store_false",
        help="do not write into each output that a trained model colorized it (XMP DigitalSourceType, model id, source)",
    )
    p.add_argument(
        "--c2pa-cert", default=env.c2pa_cert, metavar="PEM",
        help=f"sign each output's Content Credentials (C2PA) with this certificate chain, signer first (${C2PA_CERT}); needs --c2pa-key",
    )  # fmt: skip
    p.add_argument("--c2pa-key", default=env.c2pa_key, metavar="PEM", help=f"the certificate's private key, unencrypted (${C2PA_KEY})")
    p.add_argument("--c2pa-tsa", default=env.c2pa_tsa, metavar="URL", help=f"a timestamp authority for the signatures (${C2PA_TSA}; none offline)")


def _train_args(p: argparse.ArgumentParser) -> None:
    """`train`'s options, one per training parameter (colorize_core/training/train_params.py)."""
    for param in TRAIN_PARAMS:
        flag = "--" + param.name.replace("_", "-")
        if param.type is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default(param), help=param.help)
        else:
            p.add_argument(flag, type=param.type, choices=param.choices, default=default(param), help=param.help)


def build_parser(env: Settings | None = None) -> argparse.ArgumentParser:
    """The command line; the environment's settings (colorize_core/settings.py) give defaults."""
    env = env or Settings.from_env()
    fmt = _HelpFormatter
    parser = _Parser(prog="colorize", description="Colorize black-and-white photo archives.", epilog=_epilog(env), formatter_class=fmt)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("images", help="colorize image files or folders", formatter_class=fmt)
    p.add_argument("inputs", nargs="+", metavar="IN", help="image files and/or folders (recursive)")
    p.add_argument("-o", "--out", required=True, metavar="OUTDIR", help="output folder")
    _checkpoint_arg(p, required=True, env=env)
    _device_arg(p)
    p.add_argument("--batch-size", type=int, default=None, help=BATCH_SIZE_HELP)
    _output_args(p, env)

    p = sub.add_parser("train", help="train a model on a built dataset or a folder of colour photos", formatter_class=fmt)
    p.add_argument("--data", required=True, help="dataset from build-dataset (local or s3://), or a folder of colour photos")
    p.add_argument("--out", required=True, help="checkpoint file to write (and resume from)")
    _train_args(p)

    p = sub.add_parser("eval", help="score a model against colour photos and the gray baseline", formatter_class=fmt)
    _checkpoint_arg(p, required=True, env=env)
    p.add_argument("--data", required=True, help="folder of colour photos")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--limit", type=int, default=None, help="evaluate at most this many photos")
    _device_arg(p)

    p = sub.add_parser("shard", help="list an archive's images into a Parquet manifest of shards", formatter_class=fmt)
    p.add_argument("source", metavar="SOURCE", help="folder, file:// or s3://bucket/prefix")
    p.add_argument("--manifest", required=True, metavar="DEST", help="manifest file to write (.parquet; local or s3://)")
    p.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, help="images per shard")

    p = sub.add_parser("build-dataset", help="build Parquet training shards from colour photos", formatter_class=fmt)
    p.add_argument("source", metavar="SOURCE", help="folder/prefix of photos, or a manifest .parquet")
    p.add_argument("--dest", required=True, help="dataset folder or s3:// prefix")
    p.add_argument("--size", type=int, default=DEFAULT_SAMPLE_SIZE, help="stored sample size (square)")
    p.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, help="photos per shard (when SOURCE is not a manifest)")

    p = sub.add_parser("archive", help="colorize an archive (folder or s3://) into a destination, incrementally", formatter_class=fmt)
    p.add_argument("source", metavar="SOURCE", help="archive of black-and-white photos: folder, file:// or s3://")
    p.add_argument("--dest", required=True, help="where colorized images and Parquet metadata go")
    p.add_argument(
        "--checkpoint",
        default=env.checkpoint or "latest",
        help=f"model file/URI, or 'latest' from the registry (${HOME}/registry; see `colorize models`); ${CHECKPOINT} when set",
    )
    p.add_argument("--shard-size", type=int, default=None, help=f"images per shard task (default: {DEFAULT_SHARD_SIZE} on CPU, {CUDA_SHARD_SIZE:,} on CUDA or a work pool)")
    p.add_argument("--batch-size", type=int, default=None, help=BATCH_SIZE_HELP)
    p.add_argument("--workers", type=int, default=2, help="shard tasks at once on this machine")
    p.add_argument("--deployment", default=None, help="run the shards on this deployment's work pool (e.g. colorize-shard/shard)")
    p.add_argument("--time-limit", type=float, default=20.0, metavar="HOURS", help="stop and fail a run still working after this long (what it finished is kept)")
    p.add_argument("--pool-workers", type=int, default=None, metavar="N", help="with --deployment: N flow runs, each working through many shards (default: the pool's concurrency limit, else 16)")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS", help="if another run holds DEST, wait this long for it (then exit 75)")
    p.add_argument(
        "--no-lease", action="store_true",
        help="take no lease on DEST (unsafe: nothing keeps a second run out); only for a store that ignores conditional writes",
    )
    p.add_argument(
        "--retry-failed", action="store_true",
        help="also retry the known failures: sources that failed for good (corrupt, not an image, unsafe name) and have not changed since",
    )
    p.add_argument(
        "--colour-photos", choices=COLOUR_PHOTOS, default="skip",
        help="real colour photos: skip them (toned and aged black-and-white prints are still colorized), or colorize them too",
    )
    p.add_argument(
        "--colorize-all", dest="colour_photos", action="store_const", const="colorize",
        help="colorize every photo, whatever its colour: the same as --colour-photos colorize (an archive known to be all black-and-white)",
    )
    p.add_argument(
        "--inventory", default=None, metavar="MANIFEST_URI",
        help="take the listing from this S3 Inventory report (its manifest.json) instead of listing SOURCE: CSV, ORC or Parquet",
    )
    _device_arg(p)
    _output_args(p, env)

    p = sub.add_parser("models", help=f"list the models registered in ${HOME}/registry (what --checkpoint latest picks)", formatter_class=fmt)
    p.add_argument("--registry", default=None, help=f"registry folder or s3:// prefix (default: ${HOME}/registry)")
    p.add_argument("--json", action="store_true", help="print the entries as JSON")

    p = sub.add_parser(
        "status", help="where a destination stands: each source's latest outcome, recent runs, what still fails (exit 2 if any)",
        formatter_class=fmt,
    )
    p.add_argument("dest", metavar="DEST", help="a colorize-archive destination: folder, file:// or s3://")
    p.add_argument("--runs", type=int, default=10, help="recent runs to list")
    p.add_argument("--json", action="store_true", help="print everything as JSON")

    p = sub.add_parser(
        "verify", help="check outputs' Content Credentials (C2PA) and labels: exit 0 when all verify, 2 when any does not", formatter_class=fmt,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="output files, or folders of them")
    p.add_argument("--trust", default=None, metavar="PEM", help="certificate authorities to trust (PEM): a file then verifies only if signed under one")
    p.add_argument("--json", action="store_true", help="print each file's findings as JSON")

    p = sub.add_parser("serve", help="serve the nightly, dataset and training deployments from this process", formatter_class=fmt)
    p.add_argument("--source", default=env.serve_source, help=f"black-and-white archive to colorize nightly (${SERVE_SOURCE})")
    p.add_argument("--dest", default=env.serve_dest, help=f"where nightly outputs go (${SERVE_DEST})")
    p.add_argument("--photos", default=env.serve_photos, help=f"colour photos the training set is rebuilt from (${SERVE_PHOTOS})")
    p.add_argument("--dataset", default=env.serve_dataset, help=f"training set URI (${SERVE_DATASET})")
    p.add_argument("--checkpoint", default=env.serve_checkpoint, help=f"where training writes (${SERVE_CHECKPOINT}; what commands colorize with is ${CHECKPOINT})")

    p = sub.add_parser("demo", help="train a toy model on bundled sample photos and colorize them", formatter_class=fmt)
    p.add_argument("--out", default="demo-output", help="folder for everything the demo writes")
    p.add_argument("--seconds", type=float, default=60.0, help="training time budget")
    p.add_argument("--image-size", type=int, default=64, help="training crop size (multiple of 8)")
    _device_arg(p)
    return parser


def _signer(args: argparse.Namespace) -> Any:
    """The ContentSigner the command's --c2pa-* options give (checked by preflight), or None."""
    if not args.c2pa_cert:
        return None
    from colorize_core.storage.credentials import ContentSigner, SigningFiles

    return ContentSigner(SigningFiles(args.c2pa_cert, args.c2pa_key, args.c2pa_tsa).load())


def cmd_images(args: argparse.Namespace) -> int:
    from colorize_core.local_files import FileResult, colorize_files, expand_inputs
    from colorize_core.model.checkpoint import read_checkpoint_info, require_trained
    from colorize_core.model.infer import Colorizer
    from colorize_core.training.registry import resolve_checkpoint
    from flows.progress import Progress

    checkpoint = resolve_checkpoint(args.checkpoint)  # `latest` works here as in `archive`
    require_trained(read_checkpoint_info(checkpoint), allow_untrained=args.allow_untrained)
    colorizer = Colorizer.from_checkpoint(checkpoint, device=args.device, batch_size=args.batch_size)
    pairs = expand_inputs(args.inputs)
    with Progress(len(pairs), "colorize") as progress:

        def report(r: FileResult) -> None:
            progress.update(1)
            if not r.ok:
                print(f"failed: {r.source}: {r.error}", file=sys.stderr)

        results = colorize_files(pairs, args.out, colorizer, on_result=report, label=args.label, signer=_signer(args))
    failed = sum(not r.ok for r in results)
    from colorize_core.archive.reasons import SIGNED

    signed = f" ({sum(r.credentials == SIGNED for r in results)} signed)" if args.c2pa_cert else ""
    print(f"{len(results) - failed} colorized{signed}, {failed} failed -> {args.out} (model {colorizer.model_id})")
    return EXIT_PARTIAL if failed else EXIT_OK


def _train_params(args: argparse.Namespace) -> dict[str, object]:
    """The `train` flags as the train-model flow's parameters."""
    return {param.name: getattr(args, param.name) for param in TRAIN_PARAMS}


def cmd_train(args: argparse.Namespace) -> int:
    from colorize_core.training.distributed import torchrun_rank

    if torchrun_rank()[1] > 1:
        return _train_under_torchrun(args)
    from flows.train_model import train_model

    result = train_model(args.data, args.out, **_train_params(args))  # type: ignore[arg-type]
    last = f", last loss {result['last_loss']:.4f}" if result["last_loss"] is not None else ""
    print(f"step {result['step']}/{args.steps}{last}; wrote {result['checkpoint']} (model {result['model_id']}), registered as latest")
    return EXIT_OK


def _train_under_torchrun(args: argparse.Namespace) -> int:
    """One rank of a `torchrun` data-parallel run: train in this process (one flow run per rank
    would be N runs); rank 0 writes checkpoints and registers the model."""
    from colorize_core.training.distributed import torchrun_rank
    from colorize_core.training.registry import register_model
    from colorize_core.training.train import train
    from flows.progress import Progress
    from flows.train_model import make_train_config

    cfg = make_train_config(args.data, args.out, **_train_params(args))  # type: ignore[arg-type]
    rank, world = torchrun_rank()
    progress = Progress(args.steps, "train") if rank == 0 else None
    result = train(cfg, on_step=(lambda info: progress.update(info.step - progress.done, loss=info.loss)) if progress else None)
    if rank == 0:
        register_model(str(args.out), result.model_id, meta={"step": result.step, "data": args.data, "world_size": world})
        print(f"step {result.step}/{args.steps}; wrote {result.checkpoint} (model {result.model_id}) with {world} processes")
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from colorize_core.evaluate import evaluate
    from colorize_core.model.infer import Colorizer
    from colorize_core.training.registry import resolve_checkpoint

    colorizer = Colorizer.from_checkpoint(resolve_checkpoint(args.checkpoint), device=args.device)
    report = evaluate(args.data, colorizer, limit=args.limit)
    for path, reason in report.failed:
        print(f"failed: {path}: {reason}", file=sys.stderr)
    # What ran: on CPU a checkpoint's model may run as its int8 conversion (what `archive` runs too).
    path = f"{colorizer.device.type} {colorizer.cpu_path}" if colorizer.cpu_path else colorizer.device.type
    if args.json:
        print(json.dumps({"model_id": colorizer.model_id, "inference_path": path, **report.to_dict()}, indent=2))
    else:
        print(format_report(report.to_dict(), colorizer.model_id))
        print(f"inference path: {path} (COLORIZE_CPU_PATH=plain scores the fp32 model)")
    if report.images == 0:
        print(f"no colour photos to evaluate under {args.data}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_PARTIAL if report.failed else EXIT_OK


def format_report(report: dict[str, Any], model_id: str) -> str:
    m, g = report["model"], report["gray_baseline"]
    lines = [
        f"model {model_id} on {report['images']} photos ({report['skipped_gray']} gray skipped, {len(report['failed'])} failed)",
        f"{'':14}{'PSNR dB':>9}{'SSIM':>8}{'AuC':>8}{'colourful':>11}{'gap':>8}{'border/interior ab error':>27}",
    ]
    for name, s in (("model", m), ("gray baseline", g)):
        border = f"{s['border_error']:.2f} / {s['interior_error']:.2f} ({s['border_ratio']:.2f}x)"
        lines.append(f"{name:14}{s['psnr']:9.2f}{s['ssim']:8.4f}{s['auc']:8.4f}{s['colourfulness']:11.2f}{s['colourfulness_gap']:8.2f}{border:>27}")
    lines.append(f"ground truth colourfulness {report['truth_colourfulness']:.2f}")
    return "\n".join(lines)


LOCAL_UI_API = "http://127.0.0.1:4200/api"


def _local_server_if_running() -> contextlib.AbstractContextManager[Any]:
    """`make ui` runs a Prefect server on the default port: record the demo there if it answers,
    so its runs show in the UI (Prefect's settings for this command, not this process's
    environment; its log and event workers and task threads follow them); otherwise Prefect
    runs a temporary server for this process."""
    import urllib.request

    if os.environ.get("PREFECT_API_URL"):
        return contextlib.nullcontext()
    try:
        urllib.request.urlopen(f"{LOCAL_UI_API}/health", timeout=1).close()
    except OSError:
        return contextlib.nullcontext()
    from prefect.settings import PREFECT_API_URL, temporary_settings

    print(f"demo: recording runs in the Prefect server at {LOCAL_UI_API} (UI: http://127.0.0.1:4200)")
    return temporary_settings(updates={PREFECT_API_URL: LOCAL_UI_API})


def cmd_verify(args: argparse.Namespace) -> int:
    import dataclasses

    from flows.verify import describe, verify_paths

    trust = Path(args.trust).read_bytes() if args.trust else None
    results = verify_paths(args.paths, trust)
    if not results:
        print("colorize verify: no image files under the paths given", file=sys.stderr)
        return EXIT_ERROR
    for v in results:
        if args.json:
            print(json.dumps({"path": str(v.path), "verified": v.ok, "problem": v.problem, "credentials": dataclasses.asdict(v.credentials),
                              "label": dataclasses.asdict(v.label) if v.label else None}))  # fmt: skip
        else:
            print(describe(v))
    bad = sum(not v.ok for v in results)
    if not args.json:
        print(f"colorize verify: {len(results) - bad} of {len(results)} verified")
    return EXIT_OK if bad == 0 else EXIT_PARTIAL


def cmd_demo(args: argparse.Namespace) -> int:
    from flows.demo import demo

    result = demo(out=args.out, seconds=args.seconds, image_size=args.image_size, device=args.device)
    ds, tr, co = result["dataset"], result["trained"], result["colorized"]
    held_out = ", ".join(result["held_out"])
    print(f"demo: {result['photos']} sample photos -> {args.out}/photos (colour, for training), {args.out}/held-out ({held_out}) and {args.out}/gray (gray)")
    print(f"demo: dataset {ds['rows']} rows, {sum(ds['skipped'].values())} skipped, {ds['failed']} failed -> {args.out}/dataset")
    print(f"demo: trained {tr['step']} steps -> {tr['checkpoint']} (model {tr['model_id']})")
    print(f"demo: colorized {co['ok']} images ({co['failed']} failed) -> {args.out}/colorized, gallery {args.out}/colorized/_colorize/gallery.html")
    print(f"demo: scored on the {len(result['held_out'])} held-out photos, which the model never saw:")
    print(format_report(result["eval"], tr["model_id"]))
    print("demo: a minute of CPU training gives a toy model; see README 'Training a real model'.")
    return EXIT_OK if co["failed"] == 0 else EXIT_PARTIAL


def cmd_shard(args: argparse.Namespace) -> int:
    from flows.build_dataset import shard_archive

    result = shard_archive(args.source, args.manifest, args.shard_size)
    print(f"{result['images']} images in {result['shards']} shards of up to {args.shard_size} -> {args.manifest}")
    return EXIT_OK


def cmd_build_dataset(args: argparse.Namespace) -> int:
    from flows.build_dataset import build_dataset_flow

    summary = build_dataset_flow(args.source, args.dest, size=args.size, shard_size=args.shard_size)
    for key, reason in summary.failures:
        print(f"failed: {key}: {reason}", file=sys.stderr)
    skipped = ", ".join(f"{n} {kind}" for kind, n in summary.skipped.items()) or "none"
    print(
        f"{summary.sources} sources -> {summary.rows} rows; skipped {skipped}; {summary.failed} failed "
        f"({summary.reused_shards} shards already built) -> {summary.dest}"
    )
    return EXIT_PARTIAL if summary.failed else EXIT_OK


def cmd_archive(args: argparse.Namespace) -> int:
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.colorize_archive import colorize_archive
    from flows.reporting import MAX_FAILURE_LOGS

    runner = colorize_archive.with_options(task_runner=ThreadPoolTaskRunner(max_workers=args.workers))
    summary = runner(
        args.source,
        args.dest,
        checkpoint=args.checkpoint,
        shard_size=args.shard_size,
        device=args.device,
        batch_size=args.batch_size,
        deployment=args.deployment,
        pool_workers=args.pool_workers,
        time_limit_h=args.time_limit,
        wait_s=args.wait,
        no_lease=args.no_lease,
        allow_untrained=args.allow_untrained,
        label=args.label,
        retry_failed=args.retry_failed,
        colour_photos=args.colour_photos,
        inventory=args.inventory,
        c2pa_cert=args.c2pa_cert,
        c2pa_key=args.c2pa_key,
        c2pa_tsa=args.c2pa_tsa,
    )
    # The run's log (on the terminal) named the first MAX_FAILURE_LOGS failures already.
    for key, reason in summary.failures[MAX_FAILURE_LOGS:]:
        print(f"failed: {key}: {reason}", file=sys.stderr)
    from colorize_core.archive.vocabulary import outcome_message, plural  # the words the run's UI state says too

    print(f"model {summary.model_id}: {outcome_message(summary.counts)} -> {args.dest}")
    if summary.known_failed:
        # Not this run's failures: the exit status is about what failed now; `status` lists them.
        print(f"{plural(summary.known_failed, 'known failure')} not retried; see `colorize status {args.dest}`", file=sys.stderr)
    return EXIT_PARTIAL if summary.failed else EXIT_OK


MAX_LISTED = 20  # sources skipped as colour that `colorize status` names; --json has them all


def cmd_status(args: argparse.Namespace) -> int:
    from colorize_core.archive.summary import summarize
    from colorize_core.archive.lease import read_lease

    summary = summarize(args.dest)
    lease = read_lease(args.dest)
    if summary.sources == 0:
        print(f"{args.dest}: no colorization metadata yet (nothing under _colorize/metadata/)", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps({**summary.to_dict(), "lease": lease[0].__dict__ if lease else None}, indent=2))
    else:
        counts = ", ".join(f"{STATUS_WORDS.get(status, status)} {n}" for status, n in sorted(summary.latest.items()))
        print(f"{args.dest}: {summary.sources} sources; latest outcome: {counts}")
        if lease:
            print(f"  in progress: {lease[0].describe()}")
        for model, n in sorted(summary.ok_by_model.items()):
            print(f"  colorized with {model}: {n}")
        print(f"runs, newest first ({min(args.runs, len(summary.runs))} of {len(summary.runs)}):")
        for run in summary.runs[: args.runs]:
            run_counts = " ".join(f"{status} {n}" for status, n in sorted(run.counts.items()))
            print(f"  {run.run_id}  {run.started}  {run_counts}")
        if summary.pending:
            runs = sorted({run_id for _, run_id in summary.pending})
            print(f"pending ({len(summary.pending)}): planned by run {', '.join(runs)} and not done yet; the next run does them")
        known = set(summary.known_failures)
        if known:
            print(f"known failures ({len(known)}): not retried until the file changes (`colorize archive --retry-failed` retries them):")
            for key, error in summary.known_failures:
                print(f"  {key}: {error}")
        if summary.skipped_as_colour:
            n = len(summary.skipped_as_colour)
            print(f"skipped as colour ({n}): real colour photos, left alone (`colorize archive --colour-photos colorize` colorizes them):")
            for key, reason in summary.skipped_as_colour[:MAX_LISTED]:
                print(f"  {key}: {reason}")
            if n > MAX_LISTED:
                print(f"  ... and {n - MAX_LISTED} more (`colorize status --json` lists every one)")
        retried = [f for f in summary.failing if f not in known]
        if retried:
            print(f"failed ({len(retried)}): retried by the next run:")
            for key, error in retried:
                print(f"  {key}: {error}")
    # 2 while anything still fails, known failures included: what a monitor watches.
    return EXIT_PARTIAL if summary.failing or summary.pending else EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    import time
    from pathlib import PurePosixPath

    from colorize_core.training.registry import default_registry, list_models

    where = args.registry or default_registry()
    entries, latest = list_models(registry=where)
    if args.json:
        print(json.dumps({"registry": where, "latest": latest, "models": entries}, indent=2))
        return EXIT_OK
    if not entries:
        print(f"no models registered in {where}: `colorize train` registers each model it writes")
        return EXIT_OK
    print(f"models registered in {where} (newest first; * = latest, what --checkpoint latest picks):")
    rows = [("", "name", "model id", "steps", "registered", "data", "checkpoint")]
    for e in entries:
        step = e.get("step")
        checkpoint = str(e.get("checkpoint", "?"))
        rows.append((
            "*" if e.get("model_id") == latest else "",
            PurePosixPath(checkpoint).stem,  # models are named by their files
            str(e.get("model_id", "?")),
            "?" if step is None else str(step) + (" (untrained)" if step == 0 else ""),
            time.strftime("%Y-%m-%d %H:%M", time.localtime(float(e.get("registered_at", 0.0)))),
            str(e.get("data", "?")),
            checkpoint,
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from flows.exits import stopped_by
    from flows.serve import Locations, serve_deployments

    serve_deployments(Locations(archive=args.source, colorized=args.dest, photos=args.photos, dataset=args.dataset, checkpoint=args.checkpoint))
    status = stopped_by()  # SIGTERM stops the runner gracefully: it returns rather than raises
    if status is None:
        return EXIT_OK
    print("colorize serve: stopped", file=sys.stderr)
    return status


COMMANDS = {
    "images": cmd_images,
    "train": cmd_train,
    "eval": cmd_eval,
    "shard": cmd_shard,
    "build-dataset": cmd_build_dataset,
    "archive": cmd_archive,
    "status": cmd_status,
    "serve": cmd_serve,
    "demo": cmd_demo,
    "verify": cmd_verify,
    "models": cmd_models,
}


FLOW_COMMANDS = frozenset({"shard", "build-dataset", "train", "archive", "serve", "demo"})


def main(argv: Sequence[str] | None = None) -> int:
    try:
        env = Settings.from_env()  # once, checked: a wrong value is one line naming the variable
    except SettingsError as exc:
        print(f"colorize: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    args = build_parser(env).parse_args(argv)
    from flows.logs import DETAILS, setup_logging
    from flows.preflight import UsageError, check_arguments

    try:
        check_arguments(args)  # before the temporary server, torch or Prefect: a wrong path fails at once
    except UsageError as exc:
        print(f"colorize {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - a check that could not be made (a registry out of reach, ...)
        _report_error(args, exc, setup_logging(args.verbose, with_prefect=False))
        return EXIT_ERROR  # the arguments' status: nothing was started
    install_signal_handlers()
    flow_command = args.command in FLOW_COMMANDS
    log_file = None

    try:
        with _local_server_if_running() if args.command == "demo" else contextlib.nullcontext():
            log_file = setup_logging(args.verbose, with_prefect=flow_command)
            if flow_command:
                from flows.local_server import start_temporary_server

                start_temporary_server()
            return COMMANDS[args.command](args)
    except BaseException as exc:  # noqa: BLE001 - every failure ends as one line and a status
        if isinstance(exc, SystemExit):
            raise
        status = exit_status(exc)
        if status in (EXIT_SIGINT, EXIT_SIGTERM):
            DETAILS.error("colorize %s failed", args.command, exc_info=exc)
            rest = "" if args.command == "serve" else "; what was not finished is redone by the next run"
            print(f"colorize {args.command}: stopped{rest}", file=sys.stderr)
        else:
            _report_error(args, exc, log_file)
        return status


def _report_error(args: argparse.Namespace, exc: BaseException, log_file: Path | None) -> None:
    """A failed command's one line on stderr; its traceback to the log file (and with
    `--verbose` to the terminal too)."""
    from flows.logs import DETAILS

    DETAILS.error("colorize %s failed", args.command, exc_info=exc)
    if args.verbose:
        traceback.print_exception(exc)
    details = f" (details: {log_file})" if log_file and not args.verbose else ""
    print(f"colorize {args.command}: error: {one_line(exc)}{details}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
