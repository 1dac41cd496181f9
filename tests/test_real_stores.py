"""What differs between the real S3 servers archives run (tests/conftest.py `s3_on`: moto,
SeaweedFS, Ceph RGW) and how the project copes: the ETag form If-Match matches, keys a store
refuses. The shared contract (reads, listing, conditional writes, races, leases) is in
test_storage.py and test_reliability.py, on every server too."""

from __future__ import annotations

import pytest
from PIL import Image

from colorize_core.archive.steps import Colorized, Facts, write_output
from colorize_core.storage.objects import ObjectInfo
from colorize_core.storage.s3 import S3Store
from colorize_core.storage.stores import open_store


def test_the_if_match_form_is_learned_once_per_endpoint(s3_on: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Quoted first (as S3 returns ETags); Ceph RGW refuses that with 412 though the etag
    matches: one retry in the bare form lands, and the endpoint gets the bare form at once from
    then on. A store that matches the quoted form never sees a second request."""
    server, bucket = s3_on
    monkeypatch.setattr(S3Store, "_if_match_bare", {})
    store = open_store(f"s3://{bucket}")
    assert isinstance(store, S3Store)
    sent: list[str] = []
    store.client.meta.events.register("provide-client-params.s3.PutObject", lambda params, **_: sent.append(params.get("IfMatch", "")))
    first = store.create("lease.json", b"1")
    assert first
    sent.clear()
    second = store.replace("lease.json", b"2", first)
    assert second and store.read("lease.json") == b"2"
    tries, sent[:] = list(sent), []
    third = store.replace("lease.json", b"3", second)
    assert third and store.read("lease.json") == b"3"
    endpoint = store.client.meta.endpoint_url
    if server == "ceph":
        assert tries == [f'"{first}"', first] and sent == [second]
        assert S3Store._if_match_bare == {endpoint: True}
    else:
        assert tries == [f'"{first}"'] and sent == [f'"{second}"']
        assert S3Store._if_match_bare == {}
    sent.clear()
    assert store.replace("lease.json", b"4", first) is None and store.read("lease.json") == b"3"  # stale: refused in either form
    assert len(sent) == 1  # the etag differs: no retry in the other form


def test_a_key_the_destination_store_refuses_is_that_photos_failed_row(s3_on: tuple[str, str]) -> None:
    """SeaweedFS holds no file name over 255 bytes (KeyTooLongError), a name S3 allows: the
    photo's row is failed, permanent, with the store's reason, and the shard goes on; the other
    stores hold it."""
    server, bucket = s3_on
    out = open_store(f"s3://{bucket}/out")
    key = "long/" + "n" * 300 + ".png"
    row = write_output(out, Colorized(Facts(ObjectInfo(key, 1, "e")), key, Image.new("RGB", (8, 8)), {}), "m", "r", label=False)
    if server == "seaweedfs":
        assert (row["status"], row["permanent"]) == ("failed", True)
        assert row["error"].startswith(f"cannot be stored: {out.uri} refuses key") and "KeyTooLongError" in row["error"]
        assert list(out.list()) == []
    else:
        assert row["status"] == "ok" and out.exists(key)


def test_a_5xx_without_an_error_document_is_transient() -> None:
    """Ceph RGW answers the losers of a conditional-write race with a bare 500 (ECANCELED), which
    botocore names UnknownError: retried like any 5xx (then refused, 412), not a failed shard.
    A 5xx with a code of its own keeps that code's meaning."""
    from botocore.exceptions import ClientError

    store = S3Store("bucket")

    def error(code: str, status: int) -> ClientError:
        return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")

    assert store._error(error("UnknownError", 500), "write", "k").transient
    assert store._error(error("InternalError", 500), "write", "k").transient
    assert not store._error(error("NotImplemented", 501), "write", "k").transient
    assert not store._error(error("UnknownError", 400), "write", "k").transient
