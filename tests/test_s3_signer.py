"""The lister's own SigV4 signer (colorize_core/storage/s3_signer.py) signs exactly as botocore
presigns, or steps aside. Servers that check the signatures (SeaweedFS, Ceph RGW) accept its
URLs: tests/test_s3_list_page.py::test_real_servers_pages_take_the_fast_path."""

from __future__ import annotations

import datetime
import functools
from typing import Any
from unittest import mock
from urllib.parse import parse_qsl, urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from colorize_core.storage.s3_signer import QuerySigner

WHEN = datetime.datetime(2026, 12, 3, 21, 45, 7)
ENDPOINTS = [
    ("http://127.0.0.1:9000", "us-east-1"),  # a local store, path style, a port
    (None, "eu-west-3"),  # AWS: virtual-hosted style, https
    ("https://Store.Example.org:8443", "us-east-1"),  # a name in capitals, a port
    ("https://s3.example.org:443", "us-east-1"),  # the scheme's own port: not signed
    ("http://[::1]:9000", "us-east-1"),  # IPv6
]
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)


def client(endpoint: str | None, region: str, token: str | None = None, key: str = "AKIDEXAMPLE", secret: str = "wJalr/K7MDENG+bPxRfiCY") -> tuple[Any, Any]:
    session = boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret, aws_session_token=token, region_name=region)
    made = session.client("s3", endpoint_url=endpoint, config=Config(signature_version="s3v4"))
    return made, session.get_credentials()


@functools.lru_cache(maxsize=None)
def shared_client(endpoint: str | None, region: str, token: str | None = None, key: str = "AKIDEXAMPLE", secret: str = "wJalr/K7MDENG+bPxRfiCY") -> tuple[Any, Any]:
    return client(endpoint, region, token, key, secret)  # making a client takes ~0.1 s: once a setting


def presigned(made: Any, params: dict[str, Any], when: datetime.datetime = WHEN) -> str:
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        return str(made.generate_presigned_url("list_objects_v2", Params=params, ExpiresIn=900))


def parts(url: str) -> tuple[str, list[tuple[str, str]]]:
    split = urlsplit(url)
    return f"{split.scheme}://{split.netloc.lower()}{split.path}", sorted(parse_qsl(split.query, keep_blank_values=True))


def first(bucket: str = "listing") -> dict[str, Any]:
    return {"Bucket": bucket, "Prefix": "", "MaxKeys": 1000, "EncodingType": "url"}


@settings(max_examples=25, deadline=None)
@given(
    where=st.sampled_from(ENDPOINTS),
    token=st.sampled_from([None, "", "FwoGZXIvYXdzE+/tok=en"]),  # "": botocore sends it, empty
    prefix=text,
    delimiter=st.sampled_from([None, "/"]),
    continuation=st.one_of(st.none(), text.filter(bool)),
    max_keys=st.integers(1, 1000),
)
def test_its_urls_are_botocores(where: tuple[str | None, str], token: str | None, prefix: str, delimiter: str | None, continuation: str | None, max_keys: int) -> None:
    """Learned from one presigned URL, the signer gives every other request botocore's own URL:
    the same endpoint and the same signed query, byte for byte once sorted."""
    made, credentials = shared_client(*where, token=token)
    signer = QuerySigner.learn(presigned(made, first()), first(), credentials)
    assert signer is not None
    params: dict[str, Any] = {"Bucket": "listing", "Prefix": prefix, "MaxKeys": max_keys, "EncodingType": "url"}
    if delimiter:
        params["Delimiter"] = delimiter
    if continuation:
        params["ContinuationToken"] = continuation
    ours = signer.url(params, now=WHEN.replace(tzinfo=datetime.timezone.utc))
    assert parts(ours) == parts(presigned(made, params))
    assert ours == ours.lower()[: ours.index("?")] + ours[ours.index("?") :]  # the host in lower case, as signed


def test_it_signs_with_the_credentials_of_the_moment() -> None:
    """Refreshed credentials (a new key, a new session token) sign the next request."""
    made, credentials = shared_client("http://127.0.0.1:9000", "us-east-1")
    signer = QuerySigner.learn(presigned(made, first()), first(), credentials)
    assert signer is not None
    rotated = Credentials("AKIDROTATED", "another-secret", "a-token")
    with mock.patch.object(credentials, "get_frozen_credentials", return_value=rotated.get_frozen_credentials()):
        url = dict(parse_qsl(urlsplit(signer.url(first(), now=WHEN)).query))
    again, _ = shared_client("http://127.0.0.1:9000", "us-east-1", "a-token", "AKIDROTATED", "another-secret")  # botocore's own, with them
    assert url == dict(parse_qsl(urlsplit(presigned(again, first())).query))
    assert url["X-Amz-Security-Token"] == "a-token" and url["X-Amz-Credential"].startswith("AKIDROTATED/")


def test_a_new_day_signs_with_a_new_key() -> None:
    made, credentials = shared_client(None, "eu-west-3")
    signer = QuerySigner.learn(presigned(made, first()), first(), credentials)
    assert signer is not None
    later = WHEN + datetime.timedelta(days=1, hours=3)
    assert parts(signer.url(first(), now=later)) == parts(presigned(made, first(), when=later))


@pytest.mark.parametrize(
    "change",
    [
        "a parameter of another scheme",
        "another service",
        "a signature of its own",
        "another header signed",
        "SigV4a",
        "other parameters",
        "other credentials",
    ],
)
def test_it_steps_aside_where_it_would_not_sign_as_botocore(change: str) -> None:
    made, credentials = shared_client("http://127.0.0.1:9000", "us-east-1")
    url = presigned(made, first())
    params = first()
    if change == "a parameter of another scheme":
        url += "&X-Amz-S3session-Token=abc"
    elif change == "another service":
        url = url.replace("%2Fs3%2Faws4_request", "%2Fs3express%2Faws4_request")
    elif change == "a signature of its own":
        url = url[:-4] + ("0000" if not url.endswith("0000") else "1111")
    elif change == "another header signed":
        url = url.replace("X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=host%3Bx-amz-checksum")
    elif change == "SigV4a":
        url = url.replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256")
    elif change == "other parameters":
        params = {**first(), "Delimiter": "/"}
    elif change == "other credentials":
        credentials = Credentials("AKIDOTHER", "x")
    assert QuerySigner.learn(url, params, credentials) is None
    assert QuerySigner.learn(presigned(made, first()), first(), shared_client("http://127.0.0.1:9000", "us-east-1")[1]) is not None  # the unchanged one is learned


def test_a_parameter_it_does_not_sign_is_refused_not_dropped() -> None:
    """A ListObjectsV2 parameter outside the ones it knows would be left out of the URL: an
    error for the caller, and a URL presigned with one is not learned."""
    made, credentials = shared_client("http://127.0.0.1:9000", "us-east-1")
    signer = QuerySigner.learn(presigned(made, first()), first(), credentials)
    assert signer is not None
    with_start = {**first(), "StartAfter": "a"}
    with pytest.raises(ValueError, match="StartAfter"):
        signer.url(with_start)
    assert QuerySigner.learn(presigned(made, with_start), with_start, credentials) is None
