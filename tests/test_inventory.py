"""An archive's listing from an S3 Inventory report, written here as AWS writes one (CSV gzip
with URL-encoded keys, ORC, Parquet), equals the listing of the bucket it describes."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import itertools
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pyarrow as pa
import pyarrow.orc as orc
import pyarrow.parquet as pq
import pytest

from colorize_core.archive.listing import list_images
from colorize_core.storage.inventory import InventoryError, read_inventory
from colorize_core.storage.objects import ObjectInfo
from colorize_core.storage.stores import open_store
from flows.cli import main

CSV_SCHEMA = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass"
PARQUET_SCHEMA = (
    "message s3.inventory { required binary bucket (UTF8); required binary key (UTF8); optional binary version_id (UTF8); "
    "optional boolean is_latest; optional boolean is_delete_marker; optional int64 size; optional int64 last_modified_date "
    "(TIMESTAMP_MILLIS); optional binary e_tag (UTF8); optional binary storage_class (UTF8);}"
)
ORC_SCHEMA = (
    "struct<bucket:string,key:string,version_id:string,is_latest:boolean,is_delete_marker:boolean,size:bigint,"
    "last_modified_date:timestamp,e_tag:string,storage_class:string>"
)

# Under the source prefix "scans/": images whose keys need URL-encoding in CSV (space, '+', '%',
# unicode, a comma, a quote), a non-image, a folder marker; outside it: what must be ignored.
KEYS = [
    "scans/a.jpg", "scans/a b/photo 1.jpg", "scans/a+b/photo+2.png", "scans/100%/x.tif", "scans/é/ü.jpg", "scans/\U0001f600.png",
    "scans/comma,quote\".jpg", "scans/a-b.jpg", "scans/a0.jpg", "scans/readme.txt", "scans/box/", "scansion.jpg", "other/x.jpg",
]  # fmt: skip

_buckets = itertools.count()


@pytest.fixture()
def archive(s3_bucket: str) -> tuple[str, Any]:
    """The source bucket with KEYS, and a fresh destination bucket for reports."""
    import boto3

    client = boto3.client("s3")
    for i, key in enumerate(KEYS):
        client.put_object(Bucket=s3_bucket, Key=key, Body=key.encode() * (i + 1))
    dest = f"inventory-reports-{next(_buckets)}"
    client.create_bucket(Bucket=dest)
    return s3_bucket, dest


def report_rows(bucket: str) -> list[dict[str, Any]]:
    """Inventory rows of what the bucket holds (as listed), plus what a versioned bucket's report
    adds: an older version of a current object and a delete marker over a deleted one."""
    import boto3

    objects = boto3.client("s3").list_objects_v2(Bucket=bucket)["Contents"]
    when = datetime(2026, 12, 1, tzinfo=timezone.utc)
    rows = [
        {"bucket": bucket, "key": o["Key"], "version_id": f"v{i}", "is_latest": True, "is_delete_marker": False, "size": o["Size"],
         "last_modified_date": when, "e_tag": o["ETag"].strip('"'), "storage_class": "STANDARD"}
        for i, o in enumerate(objects)
    ]  # fmt: skip
    rows.append({**rows[0], "version_id": "old", "is_latest": False, "size": 1, "e_tag": "0" * 32})
    rows.append({**rows[0], "key": "scans/deleted.jpg", "version_id": "dm", "is_delete_marker": True, "size": None, "e_tag": None})
    rows.append({**rows[0], "key": "scans/deleted.jpg", "version_id": "gone", "is_latest": False, "size": 5, "e_tag": "1" * 32})
    return rows[::-1]  # a report is not in key order


def csv_file(rows: list[dict[str, Any]]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for r in rows:
        writer.writerow([
            r["bucket"], quote_plus(r["key"], safe=""), r["version_id"], str(r["is_latest"]).lower(), str(r["is_delete_marker"]).lower(),
            "" if r["size"] is None else r["size"], r["last_modified_date"].strftime("%Y-%m-%dT%H:%M:%S.000Z"), r["e_tag"] or "", r["storage_class"],
        ])  # fmt: skip
    return gzip.compress(text.getvalue().encode())


def columnar_file(rows: list[dict[str, Any]], file_format: str) -> bytes:
    table = pa.Table.from_pylist(rows)
    sink = io.BytesIO()
    if file_format == "ORC":
        orc.write_table(table, sink)
    else:
        pq.write_table(table, sink)
    return sink.getvalue()


def write_report(source: str, dest: str, file_format: str, *, corrupt: int | None = None) -> str:
    """A report as AWS lays it out in `dest`, its rows in two data files; returns the
    manifest's URI. `corrupt`: the data file whose manifest MD5 is wrong."""
    import boto3

    client = boto3.client("s3")
    rows = report_rows(source)
    halves = [rows[: len(rows) // 2], rows[len(rows) // 2 :]]
    suffix = {"CSV": "csv.gz", "ORC": "orc", "Parquet": "parquet"}[file_format]
    files = []
    for n, part in enumerate(halves):
        data = csv_file(part) if file_format == "CSV" else columnar_file(part, file_format)
        key = f"reports/{source}/nightly/data/part-{n}.{suffix}"
        client.put_object(Bucket=dest, Key=key, Body=data)
        md5 = hashlib.md5(data).hexdigest()
        files.append({"key": key, "size": len(data), "MD5checksum": "f" * 32 if n == corrupt else md5})
    schema = {"CSV": CSV_SCHEMA, "ORC": ORC_SCHEMA, "Parquet": PARQUET_SCHEMA}[file_format]
    manifest = {
        "sourceBucket": source, "destinationBucket": f"arn:aws:s3:::{dest}", "version": "2016-11-30", "creationTimestamp": "1764547200000",
        "fileFormat": file_format, "fileSchema": schema, "files": files,
    }  # fmt: skip
    key = f"reports/{source}/nightly/2026-12-01T00-00Z/manifest.json"
    client.put_object(Bucket=dest, Key=key, Body=json.dumps(manifest).encode())
    return f"s3://{dest}/{key}"


@pytest.mark.parametrize("file_format", ["CSV", "ORC", "Parquet"])
def test_an_inventory_lists_what_the_bucket_lists(archive: tuple[str, str], file_format: str) -> None:
    source, dest = archive
    manifest = write_report(source, dest, file_format)
    store = open_store(f"s3://{source}/scans")
    listed = list(store.list())
    assert list(read_inventory(manifest, store)) == listed  # keys decoded, old versions and markers dropped, byte order
    assert "a b/photo 1.jpg" in [o.key for o in listed] and "a+b/photo+2.png" in [o.key for o in listed]
    images = list_images(store, inventory=manifest)
    assert images == list_images(store)
    assert [o.key for o in images] == [
        "100%/x.tif", "a b/photo 1.jpg", "a+b/photo+2.png", "a-b.jpg", "a.jpg", "a0.jpg", 'comma,quote".jpg', "é/ü.jpg", "\U0001f600.png",
    ]  # fmt: skip


@pytest.mark.parametrize("file_format", ["CSV", "Parquet"])
def test_a_data_file_whose_md5_differs_is_an_error_naming_it(archive: tuple[str, str], file_format: str) -> None:
    source, dest = archive
    manifest = write_report(source, dest, file_format, corrupt=1)
    with pytest.raises(InventoryError, match=r"part-1\..*MD5 .* differs from the manifest's f{32}"):
        read_inventory(manifest, open_store(f"s3://{source}/scans"))


def test_a_report_of_another_bucket_or_of_no_bucket_is_refused(archive: tuple[str, str], tmp_path: Path) -> None:
    source, dest = archive
    manifest = write_report(source, dest, "CSV")
    with pytest.raises(InventoryError, match=f"inventory of bucket '{source}', not of s3://{dest}"):
        read_inventory(manifest, open_store(f"s3://{dest}"))
    with pytest.raises(InventoryError, match="is not an S3 Inventory manifest.json"):
        read_inventory(f"s3://{source}/scans/a.jpg", open_store(f"s3://{source}"))
    with pytest.raises(InventoryError, match="is not one: give an s3:// SOURCE"):
        read_inventory(manifest, open_store(tmp_path))


def test_a_manifest_of_another_shape_or_an_unreadable_data_file_is_an_error(archive: tuple[str, str]) -> None:
    import boto3

    source, dest = archive
    client = boto3.client("s3")
    client.put_object(Bucket=dest, Key="m/list.json", Body=b"[1, 2]")
    with pytest.raises(InventoryError, match="is not an S3 Inventory manifest.json"):
        read_inventory(f"s3://{dest}/m/list.json", open_store(f"s3://{source}"))
    data = b"these bytes are not gzip"  # the manifest's MD5 is theirs: the file is as listed, but unreadable
    client.put_object(Bucket=dest, Key="m/data/part-0.csv.gz", Body=data)
    entry = {"key": "m/data/part-0.csv.gz", "size": len(data), "MD5checksum": hashlib.md5(data).hexdigest()}
    manifest = {"sourceBucket": source, "destinationBucket": f"arn:aws:s3:::{dest}", "fileFormat": "CSV", "fileSchema": CSV_SCHEMA, "files": [entry]}
    client.put_object(Bucket=dest, Key="m/manifest.json", Body=json.dumps(manifest).encode())
    with pytest.raises(InventoryError, match=r"m/data/part-0\.csv\.gz cannot be read as CSV"):
        read_inventory(f"s3://{dest}/m/manifest.json", open_store(f"s3://{source}"))


def test_the_command_line_refuses_an_inventory_for_a_local_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bw").mkdir()
    code = main(["archive", str(tmp_path / "bw"), "--dest", str(tmp_path / "out"), "--inventory", str(tmp_path / "manifest.json")])
    assert code == 1
    assert "--inventory takes the listing of an s3:// archive" in capsys.readouterr().err


def test_an_empty_report_is_an_empty_listing(archive: tuple[str, str]) -> None:
    import boto3

    source, dest = archive
    manifest = {"sourceBucket": source, "destinationBucket": f"arn:aws:s3:::{dest}", "fileFormat": "CSV", "fileSchema": CSV_SCHEMA, "files": []}
    boto3.client("s3").put_object(Bucket=dest, Key="m/manifest.json", Body=json.dumps(manifest).encode())
    assert list(read_inventory(f"s3://{dest}/m/manifest.json", open_store(f"s3://{source}"))) == []


def test_object_info_has_no_quotes_in_etags(archive: tuple[str, str]) -> None:
    source, dest = archive
    for o in read_inventory(write_report(source, dest, "ORC"), open_store(f"s3://{source}")):
        assert isinstance(o, ObjectInfo) and '"' not in o.etag and len(o.etag) == 32


def test_planning_takes_the_listing_from_the_report(archive: tuple[str, str], tmp_path: Path) -> None:
    import inspect

    from colorize_core.archive.shards import plan_archive
    from flows.colorize_archive import colorize_archive, plan_shards

    source, dest = archive
    manifest = write_report(source, dest, "Parquet")
    listed = plan_archive(f"s3://{source}/scans", str(tmp_path / "out"), "model-x", 4)
    from_report = plan_archive(f"s3://{source}/scans", str(tmp_path / "out"), "model-x", 4, inventory=manifest)
    assert from_report == listed and from_report.todo.num_rows == 9
    for fn in (colorize_archive.fn, plan_shards.fn):  # the flow parameter reaches planning
        assert inspect.signature(fn).parameters["inventory"].default is None
