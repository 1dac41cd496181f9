"""The LIST requests' own transport (storage/s3_lister.py), against a scripted HTTP server that
answers what a test tells it to: S3's errors become the same StorageErrors as every other
call's, transient ones are retried and permanent ones are not, a 200 answer that is not a page
is retried, a bucket in another region is signed again for it, proxies and CA bundles are
honoured as botocore honours them, and a listing can be stopped early or run inside a running
event loop. (Real servers: the storage contract tests list moto, SeaweedFS and Ceph RGW.)"""

from __future__ import annotations

import asyncio
import datetime
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest

from colorize_core.storage import s3
from colorize_core.storage.objects import LocationNotFound, StorageError
from colorize_core.storage.s3 import S3Store
from colorize_core.storage.s3_signer import QuerySigner
from tests.s3server import S3_ENV

pytestmark = pytest.mark.s3  # S3's HTTP API on loopback (make test-fast leaves these to make test)

Answer = tuple[int, dict[str, str], bytes]


def page(keys: list[str], *, truncated: str | None = None) -> bytes:
    """A ListObjectsV2 page as S3 writes it (no URL encoding: the keys here are plain)."""
    contents = "".join(f"<Contents><Key>{k}</Key><LastModified>2026-12-01T00:00:00.000Z</LastModified><ETag>&quot;e{i}&quot;</ETag><Size>{i}</Size></Contents>" for i, k in enumerate(keys))
    paging = f"<IsTruncated>true</IsTruncated><NextContinuationToken>{truncated}</NextContinuationToken>" if truncated else "<IsTruncated>false</IsTruncated>"
    return f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix></Prefix><KeyCount>{len(keys)}</KeyCount><MaxKeys>1000</MaxKeys>{paging}{contents}</ListBucketResult>'.encode()


def error(code: str, message: str = "") -> bytes:
    return f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()


class Scripted:
    """An HTTP server on loopback: each request is recorded (its request line, its query) and
    answered by `answer(path, query)`."""

    def __init__(self, answer: Callable[[str, dict[str, str]], Answer], *, tls: ssl.SSLContext | None = None) -> None:
        self.answer, self.requests, self.hosts = answer, [], []
        self.in_flight = self.most_in_flight = 0
        self._lock = threading.Lock()
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query, keep_blank_values=True).items()}
                with scripted._lock:
                    scripted.requests.append((self.requestline, query))
                    scripted.hosts.append(self.headers.get("Host", ""))
                    scripted.in_flight += 1
                    scripted.most_in_flight = max(scripted.most_in_flight, scripted.in_flight)
                try:
                    status, headers, body = scripted.answer(urlsplit(self.path).path, query)
                finally:
                    with scripted._lock:
                        scripted.in_flight -= 1
                self.send_response(status)
                for name, value in {"Content-Type": "application/xml", **headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

        class Quiet(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that hung up (a listing stopped early, a refused handshake)

        self.server = Quiet(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]

    def __enter__(self) -> Scripted:
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def aws(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Point the project's clients at `endpoint` (fresh clients, retries for 20 s at most)."""

    def point(endpoint: str) -> None:
        for name, value in {**S3_ENV, "AWS_ENDPOINT_URL": endpoint, "COLORIZE_RETRY_SECONDS": "20"}.items():
            monkeypatch.setenv(name, value)
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy", "AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setattr(s3, "_clients", {})

    return point


def keys_of(store: S3Store) -> list[str]:
    return [o.key for o in store.list()]


def script(*answers: Answer) -> Callable[[str, dict[str, str]], Answer]:
    """Answers in turn, the last one for every request after."""
    left = list(answers)
    return lambda _path, _query: left.pop(0) if len(left) > 1 else left[0]


def test_a_transient_error_is_asked_again_and_the_listing_is_whole(aws: Callable[[str], None]) -> None:
    answers = script((503, {}, error("SlowDown", "reduce your request rate")), (500, {}, b""), (200, {}, page(["a.jpg", "b.jpg"])))
    with Scripted(answers) as server:
        aws(f"http://127.0.0.1:{server.port}")
        assert keys_of(S3Store("b")) == ["a.jpg", "b.jpg"]
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    "body",
    [
        error("InternalError", "try again"),  # S3 can send an error in a 200 answer
        b"",
        b"not xml",
        page(["a.jpg", "b.jpg"])[:-40],  # cut off
        b"<ListBucketResult><Contents><Key>a.jpg</Key><Size>big</Size></Contents></ListBucketResult>",
    ],
)
def test_a_200_answer_that_is_not_a_page_is_asked_again_not_read_as_the_last(aws: Callable[[str], None], body: bytes) -> None:
    # Read as a page, each would look like an empty last one and drop every key after it.
    with Scripted(script((200, {}, body), (200, {}, page(["a.jpg", "b.jpg"])))) as server:
        aws(f"http://127.0.0.1:{server.port}")
        assert keys_of(S3Store("b")) == ["a.jpg", "b.jpg"]
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("answer", "kind", "words"),
    [
        ((404, {}, error("NoSuchBucket", "The specified bucket does not exist")), LocationNotFound, "does not exist (NoSuchBucket)"),
        ((403, {}, error("AccessDenied", "Access Denied")), StorageError, "check the AWS credentials"),
        ((403, {}, error("SignatureDoesNotMatch", "bad")), StorageError, "SignatureDoesNotMatch"),
        ((400, {}, b""), StorageError, "400"),
    ],
)
def test_a_permanent_error_fails_at_once_in_the_stores_words(aws: Callable[[str], None], answer: Answer, kind: type[Exception], words: str) -> None:
    with Scripted(script(answer)) as server:
        aws(f"http://127.0.0.1:{server.port}")
        for concurrency in (1, 8):
            store = S3Store("b")
            store.list_concurrency = concurrency
            with pytest.raises(kind) as failed:
                keys_of(store)
            assert words in str(failed.value) and "s3://b" in str(failed.value)
            assert not getattr(failed.value, "transient", False)
    assert len(server.requests) == 2  # one a listing: not retried
    assert "X-Amz-Signature" not in str(failed.value)


def test_a_garbled_answer_is_retried_and_its_error_shows_no_signature(aws: Callable[[str], None]) -> None:
    """aiohttp words a broken answer with the request's URL; a presigned URL is a credential
    until it expires, so the error (and the log) names the failure without the query."""
    import socket

    from colorize_core.storage.errors import RetryPolicy

    listener = socket.create_server(("127.0.0.1", 0))
    answered = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            answered.append(conn.recv(65536))
            conn.sendall(b"HTTP/1.1 2x0 WHAT\r\nContent-Length: 0\r\n\r\n")
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        aws(f"http://127.0.0.1:{listener.getsockname()[1]}")
        with pytest.raises(StorageError) as failed:
            keys_of(S3Store("b").with_retries(RetryPolicy(total_s=1.0, first_s=0.05)))
    finally:
        listener.close()
    assert failed.value.transient and getattr(failed.value, "retried", False) and len(answered) >= 2
    assert "Bad status line" in str(failed.value) and "127.0.0.1" in str(failed.value)
    assert "Signature" not in str(failed.value) and "Credential" not in str(failed.value)


def test_a_page_cut_short_by_a_missing_continuation_token_is_an_error(aws: Callable[[str], None]) -> None:
    broken = page(["a.jpg"]).replace(b"<IsTruncated>false</IsTruncated>", b"<IsTruncated>true</IsTruncated>")
    with Scripted(script((200, {}, broken))) as server:
        aws(f"http://127.0.0.1:{server.port}")
        with pytest.raises(StorageError, match="truncated without a continuation token"):
            keys_of(S3Store("b"))


def test_pages_follow_their_continuation_tokens_in_order(aws: Callable[[str], None]) -> None:
    pages = {None: page(["a.jpg"], truncated="t1"), "t1": page(["b.jpg"], truncated="t 2+"), "t 2+": page(["c.jpg"])}
    with Scripted(lambda _path, query: (200, {}, pages[query.get("continuation-token")])) as server:
        aws(f"http://127.0.0.1:{server.port}")
        store = S3Store("b")
        store.list_concurrency = 1
        assert keys_of(store) == ["a.jpg", "b.jpg", "c.jpg"]
    assert [q.get("continuation-token") for _, q in server.requests] == [None, "t1", "t 2+"]
    assert all(q["list-type"] == "2" and q["encoding-type"] == "url" and q["max-keys"] == "1000" for _, q in server.requests)


WRONG_REGION = [
    (301, {"x-amz-bucket-region": "eu-west-3"}, error("PermanentRedirect", "use the right endpoint")),
    # A bucket new to DNS: followed by hand (its Location holds the same signature, for another host).
    (307, {"x-amz-bucket-region": "eu-west-3", "Location": "/elsewhere"}, error("TemporaryRedirect", "please re-send")),
    # A presigned request's answer: the region in the error document only.
    (400, {}, error("AuthorizationQueryParametersError", "the region 'us-east-1' is wrong; expecting 'eu-west-3'").replace(b"</Error>", b"<Region>eu-west-3</Region></Error>")),
]


@pytest.mark.parametrize("wrong", WRONG_REGION)
def test_a_bucket_in_another_region_is_signed_again_for_it(aws: Callable[[str], None], caplog: pytest.LogCaptureFixture, wrong: Answer) -> None:
    """S3 answers a request signed for the wrong region with an error naming the bucket's
    region; botocore's client signs again for it, and so does the lister (once)."""

    def answer(path: str, query: dict[str, str]) -> Answer:
        if path == "/elsewhere":
            return 500, {}, error("InternalError", "a redirect was followed")
        if "/eu-west-3/" not in query.get("X-Amz-Credential", ""):
            return wrong
        return 200, {}, page(["a.jpg"])

    with Scripted(answer) as server:
        aws(f"http://127.0.0.1:{server.port}")
        with caplog.at_level("INFO"):
            assert keys_of(S3Store("b")) == ["a.jpg"]
            assert keys_of(S3Store("b")) == ["a.jpg"]  # the next listing signs for it at once
    regions = [q["X-Amz-Credential"].split("/")[2] for _, q in server.requests]
    assert regions == ["us-east-1", "eu-west-3", "eu-west-3"]
    assert "region eu-west-3" in caplog.text


def test_requests_after_the_first_are_signed_as_botocore_presigns_them_in_each_region(aws: Callable[[str], None], monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages across a region redirect: botocore presigns the first request in each region, the
    lister's own signer (s3_signer) the others, and each of those is the URL botocore would have
    presigned at its instant, for the bucket's region (continuation tokens with "+" and a space)."""
    pages = {None: page(["a.jpg"], truncated="t 1+"), "t 1+": page(["b.jpg"], truncated="t2"), "t2": page(["c.jpg"])}

    def answer(_path: str, query: dict[str, str]) -> Answer:
        if "/eu-west-3/" not in query.get("X-Amz-Credential", ""):
            return WRONG_REGION[0]
        return 200, {}, pages[query.get("continuation-token")]

    signed: list[str] = []
    url = QuerySigner.url
    monkeypatch.setattr(QuerySigner, "url", lambda self, params, now=None: signed.append(url(self, params, now)) or signed[-1])
    with Scripted(answer) as server:
        aws(f"http://127.0.0.1:{server.port}")
        store = S3Store("b")
        store.list_concurrency = 1
        assert keys_of(store) == ["a.jpg", "b.jpg", "c.jpg"]
        assert len(server.requests) == 4 and len(signed) == 2  # us-east-1 refused; eu-west-3: botocore's, then two of the lister's
        for ours in signed:
            query = dict(parse_qsl(urlsplit(ours).query))
            params = {"Bucket": "b", "Prefix": "", "MaxKeys": 1000, "EncodingType": "url", "ContinuationToken": query["continuation-token"]}
            with mock.patch("botocore.auth.get_current_datetime", return_value=datetime.datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ")):
                botocores = s3._s3_presign_client(store._max_connections, "eu-west-3").generate_presigned_url("list_objects_v2", Params=params, ExpiresIn=900)
            assert sorted(parse_qsl(urlsplit(ours).query)) == sorted(parse_qsl(urlsplit(botocores).query))
    assert [q.get("continuation-token") for _, q in server.requests[1:]] == [None, "t 1+", "t2"]


def test_a_redirect_to_a_region_that_is_still_refused_is_not_followed_again(aws: Callable[[str], None]) -> None:
    with Scripted(script((301, {"x-amz-bucket-region": "eu-west-3"}, error("PermanentRedirect", "elsewhere")))) as server:
        aws(f"http://127.0.0.1:{server.port}")
        with pytest.raises(StorageError, match="PermanentRedirect"):
            keys_of(S3Store("b"))
    assert len(server.requests) == 2


def test_at_most_concurrency_requests_are_in_flight_each_signed_when_sent(aws: Callable[[str], None]) -> None:
    """24 prefixes, 2 at a time, 0.2 s an answer: never more than 2 requests at the server, and
    no URL waits in a queue after it was signed (its X-Amz-Date is the time it was sent)."""
    folders = [f"f{i:02d}/" for i in range(24)]
    ages: list[float] = []

    def answer(_path: str, query: dict[str, str]) -> Answer:
        signed = datetime.datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
        ages.append(time.time() - signed.timestamp())  # at most 1 s more than the true age (whole seconds)
        if query.get("delimiter"):
            return 200, {}, page([]).replace(b"</ListBucketResult>", "".join(f"<CommonPrefixes><Prefix>{f}</Prefix></CommonPrefixes>" for f in folders).encode() + b"</ListBucketResult>").replace(b"<KeyCount>0", f"<KeyCount>{len(folders)}".encode())
        time.sleep(0.2)
        return 200, {}, page([f"{query['prefix']}a.jpg"])

    with Scripted(answer) as server:
        aws(f"http://127.0.0.1:{server.port}")
        store = S3Store("b")
        store.list_concurrency = 2
        assert keys_of(store) == [f"{f}a.jpg" for f in folders]
    assert server.most_in_flight == 2 and len(server.requests) == 25
    assert max(ages) < 1.5  # 2.4 s of queue: a URL signed when queued would be older


def test_a_later_prefixs_permanent_error_fails_the_listing_after_the_earlier_ones(aws: Callable[[str], None]) -> None:
    folders = ["a/", "b/", "c/", "d/"]

    def answer(_path: str, query: dict[str, str]) -> Answer:
        if query.get("delimiter"):
            listed = "".join(f"<CommonPrefixes><Prefix>{f}</Prefix></CommonPrefixes>" for f in folders).encode()
            return 200, {}, page([]).replace(b"</ListBucketResult>", listed + b"</ListBucketResult>").replace(b"<KeyCount>0", b"<KeyCount>4")
        if query["prefix"] == "d/":
            return 403, {}, error("AccessDenied", "not this folder")
        return 200, {}, page([f"{query['prefix']}1.jpg", f"{query['prefix']}2.jpg"])

    with Scripted(answer) as server:
        aws(f"http://127.0.0.1:{server.port}")
        store = S3Store("b")
        store.list_concurrency = 2  # the 4 folders are enough to list flat, 2 at a time
        listed: list[str] = []
        with pytest.raises(StorageError, match="cannot list 'd/': AccessDenied"):
            for batch in store.list_batches():
                listed.extend(batch.column("key").to_pylist())
        assert listed == ["a/1.jpg", "a/2.jpg", "b/1.jpg", "b/2.jpg", "c/1.jpg", "c/2.jpg"]


def test_a_common_prefix_outside_the_one_listed_is_an_error_not_a_loop(aws: Callable[[str], None]) -> None:
    folders = b"<CommonPrefixes><Prefix>a/</Prefix></CommonPrefixes>"
    broken = page([]).replace(b"</ListBucketResult>", folders + b"</ListBucketResult>").replace(b"<KeyCount>0", b"<KeyCount>1")
    with Scripted(script((200, {}, broken))) as server:  # "a/" again under "a/", for ever
        aws(f"http://127.0.0.1:{server.port}")
        with pytest.raises(StorageError, match="listing 'a/' gave the common prefix 'a/', which is not under it"):
            keys_of(S3Store("b"))


def test_the_host_is_sent_as_it_is_signed_in_lower_case(aws: Callable[[str], None]) -> None:
    with Scripted(script((200, {}, page(["a.jpg"])))) as server:
        aws(f"http://LocalHost:{server.port}")
        assert keys_of(S3Store("b")) == ["a.jpg"]
    assert server.hosts == [f"localhost:{server.port}"]


def test_a_profile_that_does_not_exist_is_the_stores_error(aws: Callable[[str], None], monkeypatch: pytest.MonkeyPatch) -> None:
    with Scripted(script((200, {}, page(["a.jpg"])))) as server:
        aws(f"http://127.0.0.1:{server.port}")
        monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
        with pytest.raises(StorageError, match="ProfileNotFound.*no-such-profile") as failed:
            keys_of(S3Store("b"))
        assert not failed.value.transient
    assert not server.requests


def test_a_lister_that_cannot_open_says_so_and_leaves_no_loop_running() -> None:
    from botocore.exceptions import ProfileNotFound

    from colorize_core.storage.s3_lister import Lister

    def presigner(_region: str | None) -> Any:
        raise ProfileNotFound(profile="gone")

    def open_one() -> None:
        lister = Lister(presigner, "b", concurrency=4, error=lambda exc, _prefix: StorageError(f"worded: {exc}"))
        with pytest.raises(StorageError, match="worded: The config profile \\(gone\\)"):
            lister.__enter__()
        assert lister._loop.is_closed()

    open_one()  # the loop in this thread

    async def inside() -> None:
        open_one()  # the loop in a thread of its own

    asyncio.run(inside())
    assert not [t for t in threading.enumerate() if t.name == "s3-list"]


def test_requests_go_through_the_proxy_botocore_would_use(aws: Callable[[str], None], monkeypatch: pytest.MonkeyPatch) -> None:
    # The store's host does not resolve: only the proxy can answer.
    with Scripted(script((200, {}, page(["a.jpg"])))) as proxy:
        aws("http://s3.example.invalid:9000")
        monkeypatch.setenv("HTTP_PROXY", f"127.0.0.1:{proxy.port}")  # without a scheme, as botocore reads it
        assert keys_of(S3Store("b")) == ["a.jpg"]
    request_line = proxy.requests[0][0]
    assert request_line.startswith("GET http://s3.example.invalid:9000/b?list-type=2&")


def test_no_proxy_sends_the_store_s_requests_direct(aws: Callable[[str], None], monkeypatch: pytest.MonkeyPatch) -> None:
    with Scripted(script((200, {}, page(["a.jpg"])))) as server:
        aws(f"http://127.0.0.1:{server.port}")
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert keys_of(S3Store("b")) == ["a.jpg"]


def test_a_proxys_password_is_not_in_the_error(aws: Callable[[str], None], monkeypatch: pytest.MonkeyPatch) -> None:
    from colorize_core.storage.errors import RetryPolicy

    # An https store through an http proxy: a CONNECT, which this proxy refuses (501).
    with Scripted(script((200, {}, page(["a.jpg"])))) as proxy:
        aws("https://s3.example.invalid:9000")
        monkeypatch.setenv("HTTPS_PROXY", f"http://alice:hunter2secret@127.0.0.1:{proxy.port}")
        with pytest.raises(StorageError) as failed:
            keys_of(S3Store("b").with_retries(RetryPolicy(total_s=0.5, first_s=0.05)))
    assert "501" in str(failed.value) and "alice" not in str(failed.value) and "hunter2secret" not in str(failed.value)


def _tls_store(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A TLS server's context for 127.0.0.1 (tests/certs.py) and its authority's certificate."""
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from tests.certs import issue

    issued = issue(tmp_path, "127.0.0.1", usages=[ExtendedKeyUsageOID.SERVER_AUTH], ips=["127.0.0.1"])
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(issued.cert, issued.key)
    anchor = tmp_path / "store-ca.pem"
    anchor.write_bytes(issued.anchor)
    return tls, anchor


def test_tls_is_checked_against_aws_ca_bundle_and_a_bad_certificate_is_not_retried(aws: Callable[[str], None], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tls, cert = _tls_store(tmp_path)
    with Scripted(script((200, {}, page(["a.jpg"]))), tls=tls) as server:
        aws(f"https://127.0.0.1:{server.port}")
        with pytest.raises(StorageError) as failed:  # a certificate no bundle trusts
            keys_of(S3Store("b"))
        assert not failed.value.transient and "certificate" in str(failed.value).lower()
        monkeypatch.setenv("AWS_CA_BUNDLE", str(tmp_path / "missing.pem"))
        with pytest.raises(StorageError, match="cannot read the CA bundle .*missing.pem"):
            keys_of(S3Store("b"))
        monkeypatch.setenv("AWS_CA_BUNDLE", str(cert))  # the store's own CA, as users of private stores set it
        monkeypatch.setattr(s3, "_clients", {})
        assert keys_of(S3Store("b")) == ["a.jpg"]
    assert len(server.requests) == 1  # only the listing with the right CA got through the handshake


def test_a_listing_stopped_early_leaves_nothing_running(aws: Callable[[str], None]) -> None:
    pages = {None: page([f"{i:03d}/a.jpg" for i in range(3)], truncated="t1"), "t1": page(["z.jpg"])}
    slow = threading.Event()

    def answer(_path: str, query: dict[str, str]) -> Answer:
        if query.get("continuation-token") and slow.is_set():
            time.sleep(3)  # the page the consumer no longer wants, still on its way
        return 200, {}, pages[query.get("continuation-token")]

    with Scripted(answer) as server:
        aws(f"http://127.0.0.1:{server.port}")
        store = S3Store("b")
        store.list_concurrency = 1
        slow.set()
        batches = store.list_batches()
        next(batches)
        started = time.monotonic()
        batches.close()  # the consumer stopped: its chain is cancelled, not waited for; the session closed
        assert time.monotonic() - started < 1.5
        assert not [t for t in threading.enumerate() if t.name.startswith(("s3-list", "asyncio"))]
        slow.clear()
        assert keys_of(S3Store("b"))[-1] == "z.jpg"  # and the next listing is whole


def test_a_listing_over_tls_stopped_early_closes_its_connections(aws: Callable[[str], None], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import gc
    import warnings

    tls, cert = _tls_store(tmp_path)
    folders = [f"f{i}/" for i in range(6)]

    def answer(_path: str, query: dict[str, str]) -> Answer:
        if query.get("delimiter"):
            listed = "".join(f"<CommonPrefixes><Prefix>{f}</Prefix></CommonPrefixes>" for f in folders).encode()
            return 200, {}, page([]).replace(b"</ListBucketResult>", listed + b"</ListBucketResult>").replace(b"<KeyCount>0", f"<KeyCount>{len(folders)}".encode())
        if query["prefix"] != "f0/":
            time.sleep(1)  # still on their way when the consumer stops
        return 200, {}, page([f"{query['prefix']}a.jpg"])

    with Scripted(answer, tls=tls) as server:
        aws(f"https://127.0.0.1:{server.port}")
        monkeypatch.setenv("AWS_CA_BUNDLE", str(cert))
        store = S3Store("b")
        store.list_concurrency = 3
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            batches = store.list_batches()
            assert next(batches).column("key").to_pylist() == ["f0/a.jpg"]
            batches.close()
            gc.collect()
        assert not [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


def test_a_listing_from_inside_a_running_event_loop(aws: Callable[[str], None]) -> None:
    """A caller already inside an event loop (an async flow calling the sync API) cannot have
    the lister's loop run in its thread: the lister runs it in a thread of its own."""
    with Scripted(script((200, {}, page(["a.jpg", "b.jpg"])))) as server:
        aws(f"http://127.0.0.1:{server.port}")

        async def inside() -> list[str]:
            return keys_of(S3Store("b"))

        assert asyncio.run(inside()) == ["a.jpg", "b.jpg"]
        assert not [t for t in threading.enumerate() if t.name == "s3-list"]
