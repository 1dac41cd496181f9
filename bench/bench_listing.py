"""Listing at scale: an S3 bucket listed sequentially (one ListObjectsV2 chain) against in
parallel across its prefixes, through a proxy that adds a fixed latency to every request (a
distant store; tests/faultproxy.py, in a process of its own), in the same run; and a local
folder of N files listed (scandir, one stat each; `walk_stat_s`: os.walk and an os.stat per
file, the listing before, in the same run).

Keys are laid out as an archive's are: `coll NN/box NNNN/photo_NNNNNNN.jpg`, `--per-box`
photos a box, 20 boxes a collection. The server is, by default, a minimal ListObjectsV2
server over a sorted key list (`--server index`, in a process of its own, an event loop that
answers each request from a page cache: `_ListProtocol`): like S3, its time per request does
not grow with the bucket and is small, so the figures are those of the client and the
latency. `--server moto` lists a bucket filled in moto's server instead (tests/s3server.py):
moto spends about 0.2 ms of CPU on each listed key, which outweighs 30 ms a page, so use a few
thousand keys there. Each listing is timed `--runs` times (5): `*_s` is the fastest run,
`*_median_s` the median; `*_server_s` without added latency; `speedup` is of the fastest runs,
`speedup_of_medians` of the medians; `*_client_cpu_s` is the listing process's CPU in its
fastest run (what the client costs, apart from the server and the proxy, which share the
machine's cores with it: on a 2-core VM the parallel listing's CPU for the same work varies by
up to a half from run to run with what runs beside it).

Run: `.venv/bin/python -m bench.bench_listing [--keys 50000 --latency-ms 30 --files 100000]`
(`--files 1000000` for a million-file folder; `--keys 0` or `--files 0` skips a part). JSON lines.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import multiprocessing
import os
import socket
import statistics
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlparse
from xml.sax.saxutils import escape

from bench.common import machine
from colorize_core.storage.local import LocalStore
from colorize_core.storage.objects import ObjectInfo
from colorize_core.storage.s3 import LIST_CONCURRENCY, S3Store


def archive_key(i: int, per_box: int) -> str:
    box = i // per_box
    return f"coll {box // 20:02d}/box {box:04d}/photo_{i:07d}.jpg"


def render_page(keys: list[str], path: str) -> bytes:
    """The ListObjectsV2 answer to a request for `path` (Prefix, Delimiter, MaxKeys,
    ContinuationToken, EncodingType) over `keys`, sorted; every key an empty object. The
    continuation token is the next key's index. `encoding-type=url` (the lister asks for it on
    every listing, as botocore does) is answered as S3 does: keys and prefixes percent-encoded, a
    space as "+", "/" left as it is, so the client pays for decoding them as it does against S3."""
    q = {k: v[0] for k, v in parse_qs(urlparse(path).query, keep_blank_values=True).items()}
    prefix, delimiter, max_keys = q.get("prefix", ""), q.get("delimiter", ""), int(q.get("max-keys", "1000"))
    i = int(q["continuation-token"]) if "continuation-token" in q else bisect.bisect_left(keys, prefix)
    contents: list[str] = []
    prefixes: list[str] = []
    while i < len(keys) and keys[i].startswith(prefix) and len(contents) + len(prefixes) < max_keys:
        cut = keys[i].find(delimiter, len(prefix)) if delimiter else -1
        if cut < 0:
            contents.append(keys[i])
            i += 1
            continue
        common = keys[i][: cut + len(delimiter)]
        prefixes.append(common)
        i = bisect.bisect_left(keys, common[:-1] + chr(ord(common[-1]) + 1))  # past its keys
    truncated = i < len(keys) and keys[i].startswith(prefix)
    url = q.get("encoding-type") == "url"
    code = (lambda text: quote_plus(text, safe="/")) if url else escape
    parts = ['<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
             f"<Name>listing</Name><Prefix>{code(prefix)}</Prefix><KeyCount>{len(contents) + len(prefixes)}</KeyCount>",
             f"<MaxKeys>{max_keys}</MaxKeys><IsTruncated>{'true' if truncated else 'false'}</IsTruncated>"]  # fmt: skip
    if delimiter:
        parts.append(f"<Delimiter>{code(delimiter)}</Delimiter>")
    if url:
        parts.append("<EncodingType>url</EncodingType>")
    if truncated:
        parts.append(f"<NextContinuationToken>{i}</NextContinuationToken>")
    parts.extend(
        f"<Contents><Key>{code(k)}</Key><LastModified>2026-12-01T00:00:00.000Z</LastModified><ETag>&quot;d41d8cd98f00b204e9800998ecf8427e&quot;</ETag>"
        "<Size>0</Size><StorageClass>STANDARD</StorageClass></Contents>"
        for k in contents
    )
    parts.extend(f"<CommonPrefixes><Prefix>{code(p)}</Prefix></CommonPrefixes>" for p in prefixes)
    parts.append("</ListBucketResult>")
    return "".join(parts).encode()


class _ListProtocol(asyncio.Protocol):
    """One connection of the minimal LIST server: HTTP/1.1 GET requests (no body), kept alive as
    S3 keeps them, each answered with `render_page`'s page, rendered once and kept (`_page_key`:
    the signature's parameters left out). Why so lean (an event loop, the request line read and
    the headers skipped, a page cache): the server shares the benchmark machine's two cores
    with the client, and a real store's CPU is not the client machine's. It costs 0.15-0.23 ms
    of CPU a request of the parallel listing (AMD EPYC, 2026-12-03); before, 1.2 ms with
    http.server (a thread a connection, the headers parsed by the email package) and its cache
    keyed by the whole URL, signature and all, so that since the listing's requests were
    presigned every page was rendered again (~2 ms a 1,000-key page in Python). The benchmark
    lists once untimed to fill the cache."""

    def __init__(self, keys: list[str], pages: dict[str, bytes]) -> None:
        self._keys, self._pages, self._buffer = keys, pages, b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        # Headers and body in one write, but a client's next request must not wait for an ACK.
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._buffer += data
        while (end := self._buffer.find(b"\r\n\r\n")) >= 0:
            head, self._buffer = self._buffer[:end], self._buffer[end + 4 :]
            method, path, _version = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            if method != "GET":  # (a GET has no body: the next request starts after the headers)
                self._transport.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                self._transport.close()
                return
            body = self._pages.get(page := _page_key(path))
            if body is None:
                body = self._pages[page] = render_page(self._keys, path)
            self._transport.writelines([b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n\r\n" % len(body), body])


def _page_key(path: str) -> str:
    """A request's page: its path without the signature's parameters (`X-Amz-*`), which differ
    on every request (the time, the signature), so that a page is rendered once."""
    base, _, query = path.partition("?")
    return base + "?" + "&".join(p for p in query.split("&") if not p.startswith("X-Amz-"))


def _serve_index(keys: int, per_box: int, port: int) -> None:
    names = sorted(archive_key(i, per_box) for i in range(keys))
    pages: dict[str, bytes] = {}

    async def serve() -> None:
        # A listen backlog of 256: Python's default of 5 lost SYNs when 32 connections opened
        # at once, and they were sent again after a second (listings of 1.5 s among 0.5 s).
        server = await asyncio.get_running_loop().create_server(lambda: _ListProtocol(names, pages), "127.0.0.1", port, backlog=256)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


@contextmanager
def index_server(keys: int, per_box: int) -> Iterator[str]:
    """The minimal LIST server in a process of its own (the client's CPU is not its CPU)."""
    from tests.ports import free_port

    port = free_port()
    proc = multiprocessing.get_context("fork").Process(target=_serve_index, args=(keys, per_box, port), daemon=True)
    proc.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the listing server did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.join(10)


def fill_bucket(bucket: str, keys: int, per_box: int) -> float:
    """Put `keys` empty objects straight to the server (no proxy); returns the seconds."""
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", config=Config(max_pool_connections=16))
    client.create_bucket(Bucket=bucket)
    start = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: client.put_object(Bucket=bucket, Key=archive_key(i, per_box), Body=b""), range(keys)))
    return time.perf_counter() - start


def timed_listing(bucket: str, concurrency: int) -> tuple[float, int, int, float]:
    """(seconds, objects, LIST requests, the client's CPU seconds) of one full listing, as the
    archive's listing reads it (`list_batches`: columns, no object a key)."""
    store = S3Store(bucket)
    store.list_concurrency = concurrency
    requests = [0]

    def count(_params: dict[str, Any]) -> None:
        requests[0] += 1

    store.on_list_request = count
    cpu, start = time.process_time(), time.perf_counter()
    n = sum(batch.num_rows for batch in store.list_batches())
    return time.perf_counter() - start, n, requests[0], time.process_time() - cpu


def _run_proxy(target: str, latency_s: float, conn: Any) -> None:
    from tests.faultproxy import FaultProxy

    with FaultProxy(target) as proxy:
        proxy.latency_s = latency_s
        conn.send(proxy.endpoint)
        conn.recv()  # until told to stop


@contextmanager
def latency_proxy(target: str, latency_s: float) -> Iterator[str]:
    """tests/faultproxy.py in a process of its own: its pumping is not the client's CPU."""
    ours, theirs = multiprocessing.get_context("fork").Pipe()
    proc = multiprocessing.get_context("fork").Process(target=_run_proxy, args=(target, latency_s, theirs), daemon=True)
    proc.start()
    try:
        yield ours.recv()
    finally:
        ours.send("stop")
        proc.join(10)


def bench_s3(keys: int, per_box: int, latency_ms: float, server: str, runs: int = 5) -> dict[str, Any]:
    from colorize_core.storage import s3
    from tests.s3server import apply_env, s3_server

    out: dict[str, Any] = {"bench": "s3_listing", "server": server, "keys": keys, "per_box": per_box, "latency_ms": latency_ms, "concurrency": LIST_CONCURRENCY, "runs": runs}
    with index_server(keys, per_box) if server == "index" else s3_server() as endpoint:
        apply_env(endpoint)
        if server == "moto":
            out["upload_s"] = round(fill_bucket("listing", keys, per_box), 1)
        for latency in (0.0, latency_ms / 1000):
            with latency_proxy(endpoint, latency) as proxied:
                os.environ["AWS_ENDPOINT_URL"] = proxied
                s3._clients.clear()  # a client for this proxy's endpoint
                tag = "server" if latency == 0 else f"at_{latency_ms:g}ms"
                for name, concurrency in (("sequential", 1), ("parallel", LIST_CONCURRENCY)):
                    timed_listing("listing", concurrency)  # untimed: the server's pages rendered, connections open
                    timed = sorted(timed_listing("listing", concurrency) for _ in range(runs))
                    seconds, n, requests, cpu = timed[0]
                    assert all(t[1] == keys for t in timed), f"listed {[t[1] for t in timed]} of {keys} keys"
                    out[f"{name}_{tag}_s"] = round(seconds, 3)  # the fastest run
                    out[f"{name}_{tag}_median_s"] = round(statistics.median(t[0] for t in timed), 3)
                    out[f"{name}_{tag}_client_cpu_s"] = round(cpu, 3)  # of the fastest run
                    out[f"{name}_requests"] = requests
    at = f"at_{latency_ms:g}ms"
    out["speedup"] = round(out[f"sequential_{at}_s"] / out[f"parallel_{at}_s"], 2)
    out["speedup_of_medians"] = round(out[f"sequential_{at}_median_s"] / out[f"parallel_{at}_median_s"], 2)
    out["load_average"] = round(os.getloadavg()[0], 2)  # other work on the machine's cores: the parallel figure is CPU-bound
    return out


def walk_and_stat(root: Path) -> int:
    """LocalStore.list before issue 20, for the ratio: os.walk, then an os.stat per file name,
    the same ObjectInfo at the end."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = Path(dirpath).relative_to(root).as_posix()
        for name in filenames:
            key = name if rel == "." else f"{rel}/{name}"
            st = os.stat(os.path.join(dirpath, name))
            found.append((key.encode("utf-8", "surrogateescape"), key, st))
    return sum(1 for _, key, st in sorted(found, key=lambda t: t[0]) if ObjectInfo(key, st.st_size, f"{st.st_size:x}-{st.st_mtime_ns:x}"))


def bench_local(files: int, per_folder: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        for i in range(files):
            folder = root / f"box {i // per_folder:05d}"
            if i % per_folder == 0:
                folder.mkdir()
            (folder / f"photo_{i:07d}.jpg").touch()
        make_s = time.perf_counter() - start
        store = LocalStore(root)
        best = {"scandir": float("inf"), "walk_stat": float("inf")}
        for _ in range(3):
            for name, listing in (("scandir", lambda: sum(1 for _ in store.list())), ("walk_stat", lambda: walk_and_stat(root))):
                start = time.perf_counter()
                n = listing()
                best[name] = min(best[name], time.perf_counter() - start)
                assert n == files, f"{name} listed {n} of {files} files"
        return {
            "bench": "local_listing", "files": files, "per_folder": per_folder, "seconds": round(best["scandir"], 3),
            "files_per_s": round(files / best["scandir"]), "walk_stat_s": round(best["walk_stat"], 3), "make_s": round(make_s, 1),
        }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=50_000, help="S3 objects (0: skip the S3 part)")
    parser.add_argument("--per-box", type=int, default=500, help="S3 objects per box prefix")
    parser.add_argument("--latency-ms", type=float, default=30.0, help="added to every S3 request")
    parser.add_argument("--server", choices=("index", "moto"), default="index", help="the S3 side (see above)")
    parser.add_argument("--runs", type=int, default=5, help="timed listings of each kind (the fastest and the median reported)")
    parser.add_argument("--files", type=int, default=100_000, help="local files (0: skip; 1000000 for a million)")
    parser.add_argument("--per-folder", type=int, default=1000, help="local files per folder")
    args = parser.parse_args()
    when = time.strftime("%Y-%m-%d")
    if args.keys:
        print(json.dumps(bench_s3(args.keys, args.per_box, args.latency_ms, args.server, args.runs) | {"machine": machine(), "date": when}), flush=True)
    if args.files:
        print(json.dumps(bench_local(args.files, args.per_folder) | {"machine": machine(), "date": when}), flush=True)


if __name__ == "__main__":
    main()
