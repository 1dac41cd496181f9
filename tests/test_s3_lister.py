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
from urllib.parse import parse_qs, urlsplit

import pytest

from colorize_core.storage import s3
from colorize_core.storage.objects import LocationNotFound, StorageError
from colorize_core.storage.s3 import S3Store
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
        self.answer, self.requests = answer, []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query, keep_blank_values=True).items()}
                scripted.requests.append((self.requestline, query))
                status, headers, body = scripted.answer(urlsplit(self.path).path, query)
                self.send_response(status)
                for name, value in {"Content-Type": "application/xml", **headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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
    assert "testing-secret" not in str(failed.value) and "X-Amz-Signature" not in str(failed.value)


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
    regions = [q["X-Amz-Credential"].split("/")[2] for _, q in server.requests]
    assert regions == ["us-east-1", "eu-west-3"]
    assert "region eu-west-3" in caplog.text


def test_a_redirect_to_a_region_that_is_still_refused_is_not_followed_again(aws: Callable[[str], None]) -> None:
    with Scripted(script((301, {"x-amz-bucket-region": "eu-west-3"}, error("PermanentRedirect", "elsewhere")))) as server:
        aws(f"http://127.0.0.1:{server.port}")
        with pytest.raises(StorageError, match="PermanentRedirect"):
            keys_of(S3Store("b"))
    assert len(server.requests) == 2


def test_requests_go_through_the_proxy_botocore_would_use(aws: Callable[[str], None], monkeypatch: pytest.MonkeyPatch) -> None:
    # The store's host does not resolve: only the proxy can answer.
    with Scripted(script((200, {}, page(["a.jpg"])))) as proxy:
        aws("http://s3.example.invalid:9000")
        monkeypatch.setenv("HTTP_PROXY", f"127.0.0.1:{proxy.port}")  # without a scheme, as botocore reads it
        assert keys_of(S3Store("b")) == ["a.jpg"]
    request_line = proxy.requests[0][0]
    assert request_line.startswith("GET http://s3.example.invalid:9000/b?list-type=2&")


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = tmp_path / "store.pem", tmp_path / "store.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_is_checked_against_aws_ca_bundle_and_a_bad_certificate_is_not_retried(aws: Callable[[str], None], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
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


def test_a_listing_from_inside_a_running_event_loop(aws: Callable[[str], None]) -> None:
    """A caller already inside an event loop (an async flow calling the sync API) cannot have
    the lister's loop run in its thread: the lister runs it in a thread of its own."""
    with Scripted(script((200, {}, page(["a.jpg", "b.jpg"])))) as server:
        aws(f"http://127.0.0.1:{server.port}")

        async def inside() -> list[str]:
            return keys_of(S3Store("b"))

        assert asyncio.run(inside()) == ["a.jpg", "b.jpg"]
        assert not [t for t in threading.enumerate() if t.name == "s3-list"]
