"""Listing at scale: S3 listed in parallel across common prefixes gives the sequential listing,
in the same byte order; local folders are listed with scandir."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colorize_core.storage.local import LocalStore
from colorize_core.storage.objects import ObjectInfo
import pyarrow as pa

from colorize_core.storage.s3 import CommonPrefix, S3Store, interleave_prefixes


def utf8(key: str) -> bytes:
    return key.encode("utf-8")


def split(keys: set[str], prefix: str) -> tuple[list[str], list[str]]:
    """What S3 answers for Prefix=prefix, Delimiter="/": direct keys and common prefixes."""
    direct, prefixes = [], set()
    for k in keys:
        if not k.startswith(prefix):
            continue
        rest = k[len(prefix) :]
        if "/" in rest:
            prefixes.add(prefix + rest[: rest.index("/") + 1])
        else:
            direct.append(k)
    return direct, sorted(prefixes)


def expand(keys: set[str], prefix: str, depth: int) -> Iterator[str]:
    """The listing rebuilt from splits `depth` levels deep, the rest listed flat (sorted, as S3)."""
    if depth == 0:
        yield from sorted((k for k in keys if k.startswith(prefix)), key=utf8)
        return
    direct, prefixes = split(keys, prefix)
    for entry in interleave(direct, prefixes):
        if isinstance(entry, CommonPrefix):
            yield from expand(keys, entry.prefix, depth - 1)
        else:
            yield entry


def interleave(direct: list[str], prefixes: list[str]) -> list[str | CommonPrefix]:
    """interleave_prefixes with the direct keys given in any order, its runs as keys."""
    runs = interleave_prefixes(pa.table({"key": pa.array(direct, pa.string())}), prefixes)
    return [k for entry in runs for k in ([entry] if isinstance(entry, CommonPrefix) else entry.column("key").to_pylist())]


# Characters around '/' in byte order ('-' < '/' < '0'), space, '+', '%', and non-ASCII (2-, 3-
# and 4-byte UTF-8, whose byte order is not that of UTF-16).
KEY_CHARS = st.sampled_from(["a", "b", "-", ".", "/", "0", " ", "+", "%", "é", "\uffee", "\U0001f600", "~"])


@settings(max_examples=300, deadline=None)
@given(st.sets(st.text(KEY_CHARS, min_size=1, max_size=8), max_size=40), st.integers(0, 4), st.sampled_from(["", "a", "a/", "a-"]))
def test_prefix_merge_gives_the_byte_order(keys: set[str], depth: int, prefix: str) -> None:
    want = sorted((k for k in keys if k.startswith(prefix)), key=utf8)
    assert list(expand(keys, prefix, depth)) == want


def test_merge_places_keys_between_a_prefix_and_its_siblings() -> None:
    merged = interleave(["a0", "a-b", "a", "b"], ["a/"])
    assert merged == ["a", "a-b", CommonPrefix("a/"), "a0", "b"]


# Keys chosen to stress the order: nested prefixes, keys beside prefixes that sort before, after
# and between them, marker objects, unicode, spaces, '+' and '%'.
STRESS_KEYS = [
    "a", "a-b", "a/b", "a/b/c.jpg", "a/b-c.jpg", "a/b0.jpg", "a/b/d/e.png", "a/b/d-e.png", "a0", "a0/x.png",
    "a.jpg", "a b/photo 1.jpg", "a b/photo+2.jpg", "a+b/%41.png", "a%2Fb.png", "b/", "b/c.jpg", "b/c/", "b/c/d.jpg",
    "é/x.png", "é.png", "e/x.png", "\uffee/z.png", "\U0001f600/smile.png", "\U0001f600.png", "z/z/z/z/z/deep.png", "~",
] + [f"box {i:02d}/photo_{j}.png" for i in range(12) for j in range(3)] + [f"box {i:02d}.txt" for i in range(0, 12, 3)]  # fmt: skip


@pytest.fixture()
def stressed_bucket(s3_bucket: str) -> str:
    import boto3

    client = boto3.client("s3")
    for key in STRESS_KEYS:
        client.put_object(Bucket=s3_bucket, Key=key, Body=key.encode())
        client.put_object(Bucket=s3_bucket, Key=f"pre/fix/{key}", Body=b"x" * len(key))
    return s3_bucket


def listing(store: S3Store, prefix: str = "", *, concurrency: int) -> list[ObjectInfo]:
    store.list_concurrency = concurrency
    return list(store.list(prefix))


@pytest.mark.parametrize("concurrency", [2, 16])
@pytest.mark.parametrize("page_size", [1000, 3])
def test_parallel_listing_equals_the_sequential_one(stressed_bucket: str, concurrency: int, page_size: int) -> None:
    # concurrency 2 stops splitting at 4 prefixes and lists the rest flat; 16 splits to the
    # depth limit; page size 3 makes every split and flat listing take several pages.
    for root, prefix in [("", ""), ("", "a"), ("", "box 0"), ("pre/fix", ""), ("pre/fix", "a/")]:
        store = S3Store(stressed_bucket, root)
        store.page_size = page_size
        sequential = listing(store, prefix, concurrency=1)
        keys = [o.key for o in sequential]
        under_root = [k.removeprefix(root + "/") for k in STRESS_KEYS + [f"pre/fix/{k}" for k in STRESS_KEYS] if not root or k.startswith(root + "/")]
        wanted = sorted((k for k in under_root if k.startswith(prefix) and not k.endswith("/")), key=utf8)
        assert keys == wanted, (root, prefix)
        assert listing(store, prefix, concurrency=concurrency) == sequential, (root, prefix)


def test_pages_read_by_the_lister_equal_botocores_parse(stressed_bucket: str) -> None:
    import boto3

    from colorize_core.storage.s3_list_page import ListPage

    full = [
        ObjectInfo(o["Key"], o["Size"], o["ETag"].strip('"'))
        for page in boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=stressed_bucket, PaginationConfig={"PageSize": 7})
        for o in page.get("Contents", [])
        if not o["Key"].endswith("/")
    ]
    store = S3Store(stressed_bucket)
    store.page_size = 7
    assert listing(store, concurrency=1) == full
    plain = boto3.client("s3").list_objects_v2(Bucket=stressed_bucket, Prefix="a", Delimiter="/", MaxKeys=4)
    with store._lister() as lister:
        lister.page_size = 4
        page: ListPage = next(iter(lister.chain("a", delimiter=True)))
    assert (page.truncated, page.key_count, page.next_token) == (plain["IsTruncated"], plain["KeyCount"], plain.get("NextContinuationToken"))
    assert list(page.prefixes) == [p["Prefix"] for p in plain["CommonPrefixes"]]
    assert page.keys.to_pylist() == [o["Key"] for o in plain["Contents"]]
    assert page.sizes.to_pylist() == [o["Size"] for o in plain["Contents"]]
    assert page.etags.to_pylist() == [o["ETag"] for o in plain["Contents"]]


def list_requests(store: S3Store, prefix: str = "") -> list[dict[str, object]]:
    calls: list[dict[str, object]] = []
    store.on_list_request = calls.append
    try:
        list(store.list(prefix))
    finally:
        store.on_list_request = None
    return calls


def test_without_common_prefixes_it_costs_what_the_sequential_listing_does(s3_bucket: str) -> None:
    import boto3

    client = boto3.client("s3")
    for i in range(7):
        client.put_object(Bucket=s3_bucket, Key=f"photo_{i}.png", Body=b"x")
    store = S3Store(s3_bucket)
    store.page_size = 3
    store.list_concurrency = 1
    sequential = list_requests(store)
    store.list_concurrency = 16
    parallel = list_requests(store)
    assert len(parallel) == len(sequential) == 3  # 7 keys, 3 a page


def test_split_levels_stop_at_enough_prefixes(stressed_bucket: str) -> None:
    store = S3Store(stressed_bucket)
    store.list_concurrency = 2  # aim: 4 prefixes; the root alone has more
    calls = list_requests(store)
    delimited = [c for c in calls if c.get("Delimiter") == "/"]
    assert [c["Prefix"] for c in delimited] == [""]  # one split; every top-level prefix listed flat
    with store._lister() as lister:
        top = store._split("", store._chain(lister, "", delimiter=True))[1]
    assert len(top) > 4 and len(calls) == 1 + len(top)


def test_a_failing_page_is_retried(stressed_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections reset by the network (a proxy that resets 30% of them): each page is asked
    again until it comes, and the parallel listing is whole. (S3's own transient errors:
    tests/test_s3_lister.py.)"""
    from tests.faultproxy import FaultProxy

    from colorize_core.storage import s3

    store = S3Store(stressed_bucket)
    store.page_size = 5
    want = [(o.key, o.size, o.etag) for o in listing(store, concurrency=1)]
    with FaultProxy(os.environ["AWS_ENDPOINT_URL"], seed=3) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        monkeypatch.setattr(s3, "_clients", {})
        monkeypatch.setenv("COLORIZE_RETRY_SECONDS", "60")
        proxy.reset_fraction = 0.3
        store = S3Store(stressed_bucket)
        store.page_size = 5
        calls: list[dict[str, object]] = []
        store.on_list_request = calls.append
        assert [(o.key, o.size, o.etag) for o in listing(store, concurrency=16)] == want
        assert proxy.counts["resets"] > 0
    assert len(calls) > len({(c["Prefix"], c.get("ContinuationToken"), c.get("Delimiter")) for c in calls})  # some asked twice


def test_local_listing_is_byte_ordered_and_skips_hidden_and_temporaries(tmp_path: Path) -> None:
    keys = ["a-b", "a/b/c.jpg", "a/b.jpg", "a/b-c", "a0", "a b/photo+1.jpg", "é.png", "e/x.png", "\U0001f600.png", "z/z/z/deep.png", "%41"]
    for key in keys:
        path = tmp_path / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(key.encode())
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.jpg").write_bytes(b"x")
    (tmp_path / "e" / ".abc123.tmp").write_bytes(b"x")
    store = LocalStore(tmp_path)
    want = sorted(keys, key=utf8)
    got = list(store.list())
    assert [o.key for o in got] == want
    st_ = os.stat(tmp_path / "e" / "x.png")
    assert got[want.index("e/x.png")] == ObjectInfo("e/x.png", st_.st_size, f"{st_.st_size:x}-{st_.st_mtime_ns:x}")
    assert [o.key for o in store.list("a/")] == ["a/b-c", "a/b.jpg", "a/b/c.jpg"]
    assert [o.key for o in store.list("e/x")] == ["e/x.png"]


def test_local_listing_reads_only_the_folders_the_prefix_can_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from colorize_core.storage import local as storage

    store = LocalStore(tmp_path)
    for key in ("photos/a.jpg", "photos/b/c.jpg", "photos-old/d.jpg", "_colorize/metadata/r-shard-00000.parquet", "_colorize/metadata/x/y.parquet"):
        store.write(key, b"x")
    scanned: list[str] = []
    real_scandir = storage.os.scandir

    def recording_scandir(path: str) -> object:
        scanned.append(Path(path).relative_to(tmp_path).as_posix())
        return real_scandir(path)

    monkeypatch.setattr(storage.os, "scandir", recording_scandir)
    assert [o.key for o in store.list("_colorize/metadata/r-")] == ["_colorize/metadata/r-shard-00000.parquet"]
    assert scanned == ["_colorize/metadata"]  # neither the photos nor metadata/x/ were read
    scanned.clear()
    assert [o.key for o in store.list("photos/")] == ["photos/a.jpg", "photos/b/c.jpg"]
    assert sorted(scanned) == ["photos", "photos/b"]


def test_local_listing_stats_each_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from colorize_core.storage import local as storage

    store = LocalStore(tmp_path)
    for i in range(20):
        store.write(f"box {i % 3}/photo_{i}.jpg", b"x" * i)
    real_stat = storage.os.stat
    files_statted: list[str] = []

    def recording_stat(path: object, *args: object, **kwargs: object) -> os.stat_result:
        if str(path).endswith(".jpg"):
            files_statted.append(str(path))
        return real_stat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(storage.os, "stat", recording_stat)
    listed = list(store.list())
    assert files_statted == []  # each file's one stat is its directory entry's
    assert [o.size for o in listed] == [int(o.key.rsplit("_", 1)[1].split(".")[0]) for o in listed]


# Names around the image test's edges: case, dots, no dot at all, hidden files, non-ASCII
# (whose case Python folds: the Kelvin sign's lower case is "k").
NAME_PARTS = st.sampled_from(["a", ".", "/", "jpg", "JPG", "jpeg", "Tif", "tiff", "webp", "png", "gif", "bmp", "txt", "é", "\u212a", "İ", "ı", "ſ", "ﬀ", " ", "x.y", "\n"])


@settings(max_examples=150, deadline=None)  # 300,000 in a one-off run found no difference
@given(st.lists(st.lists(NAME_PARTS, max_size=6).map("".join), max_size=30))
def test_the_image_test_in_arrow_equals_the_python_one(keys: list[str]) -> None:
    from colorize_core.archive.listing import image_mask, is_image_key

    assert image_mask(pa.array(keys, pa.string())).to_pylist() == [is_image_key(k) for k in keys]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["a", "/", " ", "+", "%", "%2", "%41", "%zz", "é", "&", "\x01", "~", "(", ","]), max_size=8).map("".join), max_size=20), st.booleans())
def test_url_encoded_pages_decode_as_botocore_decodes_them(keys: list[str], encode: bool) -> None:
    """S3 sends keys percent-encoded, a space as "+" (real S3 leaves "/" as it is); botocore
    reads them with unquote_plus. Any text, encoded or not, decodes the same way here."""
    from urllib.parse import quote_plus, unquote_plus

    from colorize_core.storage.s3_list_page import ListPage

    sent = [quote_plus(k, safe="/") for k in keys] if encode else keys
    page = ListPage(pa.array(sent, pa.string()), pa.array([0] * len(sent), pa.int64()), pa.array(["e"] * len(sent), pa.string()), ("a+b%2F/",), False, None, None, True)
    decoded = page.url_decoded()
    assert decoded.keys.to_pylist() == [unquote_plus(k) for k in sent]
    assert decoded.prefixes == ("a b//",) and not decoded.url_encoded


@pytest.mark.s3
def test_the_listing_benchmarks_server_answers_as_a_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench/bench_listing.py's LIST server (an event loop over a page cache) serves the lister
    as S3 would: every key once, in order, sequentially and in parallel, page after page on
    kept-alive connections; its cache knows a page whatever the request's signature."""
    from bench.bench_listing import _page_key, archive_key, index_server, timed_listing

    signed = "/listing?list-type=2&prefix=coll%2001%2F&X-Amz-Date=20261203T220000Z&X-Amz-Signature=0a"
    again = "/listing?list-type=2&prefix=coll%2001%2F&X-Amz-Date=20261203T220001Z&X-Amz-Signature=9f"
    assert _page_key(signed) == _page_key(again) != _page_key(signed.replace("01", "02"))
    from colorize_core.storage import s3
    from tests.s3server import S3_ENV

    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(s3, "_clients", {})
    with index_server(1_230, 50) as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        for concurrency in (1, 8, 8):
            _seconds, n, requests, _cpu = timed_listing("listing", concurrency)
            assert n == 1_230 and requests > 1
        store = S3Store("listing")
        store.page_size = 7
        assert [o.key for o in store.list()] == sorted(archive_key(i, 50) for i in range(1_230))
