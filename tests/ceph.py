"""A real Ceph RADOS Gateway for tests: a one-node cluster (one monitor, one memstore OSD,
radosgw) in a temporary folder, every daemon on loopback, no authentication inside the cluster,
an S3 user with the tests' credentials. Needs Debian's packages radosgw, ceph-mon and ceph-osd
(.ci/run installs them); `ceph_available()` says whether they are here.

S3 answers ~10 s after the start and takes writes a few seconds later (the OSD joins, radosgw
creates its pools); `ceph_rgw()` returns only once a bucket can be created and written."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.s3server import S3_ENV
from tests.ports import free_ports

BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph", "monmaptool", "ceph-authtool")
DAEMONS = ("client.rgw", "osd.0", "mon.a")  # stopped in this order: the gateway first, the monitor last


def ceph_missing() -> str | None:
    """Why a Ceph gateway cannot be started here, or None."""
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        return f"Ceph is not installed (no {', '.join(missing)}: apt-get install radosgw ceph-mon ceph-osd)"
    return None


def ceph_version() -> str:
    out = subprocess.run(["ceph", "--version"], capture_output=True, text=True, check=False).stdout.split()
    return out[2] if len(out) > 2 else "?"


def _config(d: Path, fsid: str, mon_port: int, rgw_port: int) -> str:
    return f"""[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{mon_port}
mon initial members = a
public addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
ms bind msgr1 = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
# The monitor refuses to start when its disk is under 5% free (a shared CI disk can be; the
# cluster's data is in memory), so only a full disk stops it.
mon data avail crit = 0
mon data avail warn = 0
osd crush chooseleaf type = 0
run dir = {d}
admin socket = {d}/$name.asok
log file = {d}/$name.log
pid file = {d}/$name.pid
keyring = {d}/keyring
[mon]
mon data = {d}/mon.$id
[osd]
osd data = {d}/osd.$id
osd objectstore = memstore
memstore device bytes = 1073741824
osd memory target = 536870912
[client.rgw]
# without it radosgw waits 300 s on authenticating to the monitor
ms mon client mode = crc
rgw frontends = beast endpoint=127.0.0.1:{rgw_port} tcp_nodelay=1
rgw thread pool size = 32
rgw data = {d}/rgw
"""


def _run(args: list[str], timeout: float = 120) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])}... failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


def _stop(d: Path) -> None:
    """radosgw, then the OSD, then the monitor; SIGKILL whatever still lives after 10 s."""
    for name in DAEMONS:
        try:
            pid = int((d / f"{name}.pid").read_text().strip())
        except (OSError, ValueError):
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _wait_writable(endpoint: str, timeout: float) -> None:
    """Until a bucket can be made and an object written (radosgw answers before its pools exist)."""
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"], aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=S3_ENV["AWS_DEFAULT_REGION"], config=Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=10),
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            client.create_bucket(Bucket="ceph-ready")
        except Exception as exc:  # noqa: BLE001 - not up yet (refused, 5xx, user not there yet, BucketAlreadyOwnedByYou)
            if "BucketAlready" not in type(exc).__name__ + str(exc):
                last = exc
                time.sleep(0.5)
                continue
        try:
            client.put_object(Bucket="ceph-ready", Key="ready", Body=b"ready")
            return
        except Exception as exc:  # noqa: BLE001
            last = exc
            time.sleep(0.5)
    raise RuntimeError(f"Ceph RGW on {endpoint} took no write within {timeout:.0f} s: {last}")


@contextmanager
def ceph_rgw(timeout: float = 180) -> Iterator[str]:
    """Start the cluster and its gateway, wait until it takes writes, yield its endpoint URL,
    stop every daemon and remove the folder. Credentials: tests.s3server.S3_ENV's."""
    why = ceph_missing()
    if why:
        raise RuntimeError(why)
    d = Path(tempfile.mkdtemp(prefix="colorize-ceph-"))
    mon_port, rgw_port = free_ports(2)
    conf = ["-c", str(d / "ceph.conf")]
    try:
        for sub in ("mon.a", "osd.0", "rgw"):
            (d / sub).mkdir()
        fsid = str(uuid.uuid4())
        (d / "ceph.conf").write_text(_config(d, fsid, mon_port, rgw_port))
        _run(["ceph-authtool", "--create-keyring", str(d / "keyring"), "--gen-key", "-n", "mon.", "--cap", "mon", "allow *"])
        _run(["monmaptool", "--create", "--addv", "a", f"[v2:127.0.0.1:{mon_port}]", "--fsid", fsid, str(d / "monmap")])
        _run(["ceph-mon", *conf, "--mkfs", "-i", "a", "--monmap", str(d / "monmap")])
        _run(["ceph-mon", *conf, "-i", "a"])  # daemonizes; its pid file is in d
        osd_uuid = str(uuid.uuid4())
        _run(["ceph", *conf, "--connect-timeout", "60", "osd", "new", osd_uuid])
        _run(["ceph-osd", *conf, "-i", "0", "--mkfs", "--osd-uuid", osd_uuid])
        _run(["ceph-osd", *conf, "-i", "0"])
        _run(["radosgw", *conf, "-n", "client.rgw"])
        # The S3 user is made through RADOS directly (no gateway round trip).
        _run(
            ["radosgw-admin", *conf, "-n", "client.rgw", "user", "create", "--uid=tester", "--display-name=Tester",
             f"--access-key={S3_ENV['AWS_ACCESS_KEY_ID']}", f"--secret-key={S3_ENV['AWS_SECRET_ACCESS_KEY']}"],
            timeout=timeout,
        )  # fmt: skip
        endpoint = f"http://127.0.0.1:{rgw_port}"
        _wait_writable(endpoint, timeout)
        yield endpoint
    finally:
        _stop(d)
        shutil.rmtree(d, ignore_errors=True)
