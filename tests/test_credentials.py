"""Content Credentials (C2PA): outputs of every format that can carry a manifest are signed
last, over the XMP label; the manifest validates, names the source as parent ingredient with its
hash, the colorization action and the model; one changed byte breaks it; a source's own
manifest is kept; a bad signing identity is one line before anything is signed."""

from __future__ import annotations

import hashlib
import io
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from PIL import Image

from colorize_core.storage.credentials import (
    ACTION,
    SIGNABLE,
    ContentSigner,
    CredentialsError,
    NotSignable,
    Origin,
    load_identity,
    read_credentials,
)
from colorize_core.storage.imageio import encode, output_format_for
from colorize_core.storage.provenance import Provenance
from tests.certs import issue


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return issue(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def signer(issued) -> ContentSigner:  # type: ignore[no-untyped-def]
    return ContentSigner(load_identity(issued.cert, issued.key))


def _photo(mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), "RGB").convert(mode)


def _source_png() -> bytes:
    buf = io.BytesIO()
    _photo("L").save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tif", ".webp"])
def test_each_format_is_signed_over_its_label_and_validates(signer: ContentSigner, issued, suffix: str) -> None:  # type: ignore[no-untyped-def]
    fmt = output_format_for(f"box/photo{suffix}")
    labelled = encode(_photo(), fmt, Provenance("residual_encoder-abc", "box/photo.png"))
    source = _source_png()
    signed = signer.sign(labelled, fmt.pil_format, Origin.of("box/photo.png", source, "residual_encoder-abc", "PNG"))
    assert b"compositeWithTrainedAlgorithmicMedia" in signed  # the XMP label is still there, under the signature
    media = SIGNABLE[fmt.pil_format]
    report = read_credentials(signed, media)
    assert report.valid and not report.trusted, report.failures  # signature and hashes good; the signer in no trust list
    assert report.failures == ("signingCredential.untrusted: signing certificate untrusted",)
    assert report.signer == "Archive Signer (Test Archive)"
    assert report.ingredient == "photo.png" and not report.source_manifest
    assert report.actions == ("c2pa.opened", ACTION)
    assert report.digital_source_type == "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
    assert report.software_agent.startswith("colorize")
    assert (report.model_id, report.source_key, report.source_sha256) == ("residual_encoder-abc", "box/photo.png", hashlib.sha256(source).hexdigest())
    trusted = read_credentials(signed, media, trust_anchors=issued.anchor)
    assert trusted.trusted and trusted.failures == ()
    assert Image.open(io.BytesIO(signed)).size == (32, 24)  # still an image every reader opens


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_one_changed_byte_of_the_pixels_fails_validation(signer: ContentSigner, suffix: str) -> None:
    fmt = output_format_for(f"photo{suffix}")
    signed = bytearray(signer.sign(encode(_photo(), fmt, None), fmt.pil_format, Origin.of("photo.png", _source_png(), "m", "PNG")))
    # The image data sits after the manifest (JPEG: APP11 segments first; PNG: caBX before IDAT).
    at = signed.rindex(b"IDAT") + 20 if suffix == ".png" else len(signed) - 40
    signed[at] ^= 0x01
    report = read_credentials(bytes(signed), SIGNABLE[fmt.pil_format])
    assert report.present and not report.valid and report.state == "Invalid"
    assert any("hash" in f for f in report.failures), report.failures


def test_an_unsigned_file_has_no_credentials() -> None:
    fmt = output_format_for("photo.jpg")
    assert not read_credentials(encode(_photo(), fmt, None), "image/jpeg").present


def test_a_source_with_its_own_manifest_keeps_it_as_the_ingredients(signer: ContentSigner) -> None:
    camera = signer.sign(_source_png(), "PNG", Origin.of("camera.png", b"", "a camera's own"))  # a source that came signed
    fmt = output_format_for("photo.jpg")
    signed = signer.sign(encode(_photo(), fmt, None), "JPEG", Origin.of("box/camera.png", camera, "m", "PNG"))
    report = read_credentials(signed, "image/jpeg")
    assert report.valid and report.source_manifest and report.ingredient == "camera.png"
    assert report.source_sha256 == hashlib.sha256(camera).hexdigest()


def test_bmp_cannot_carry_credentials(signer: ContentSigner) -> None:
    with pytest.raises(NotSignable, match="BMP"):
        signer.sign(b"BM...", "BMP", Origin.of("a.png", b"", "m"))


def test_a_bad_identity_is_one_line_naming_the_file(tmp_path: Path, issued) -> None:  # type: ignore[no-untyped-def]
    expired = issue(tmp_path / "old", "Old Signer", days=(-60, -1))
    with pytest.raises(CredentialsError, match=r"^the C2PA certificate 'Old Signer' \(.*Old Signer.pem\) expired on \d{4}-\d\d-\d\d: renew it"):
        load_identity(expired.cert, expired.key)
    with pytest.raises(CredentialsError, match="is not the key of the certificate 'Archive Signer'"):
        load_identity(issued.cert, expired.key)
    with pytest.raises(CredentialsError, match="cannot read the C2PA certificate"):
        load_identity(tmp_path / "missing.pem", issued.key)
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(CredentialsError, match="is not a PEM certificate chain"):
        load_identity(tmp_path / "junk.pem", issued.key)
    locked = ec.generate_private_key(ec.SECP256R1()).private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw"))
    (tmp_path / "locked.key").write_bytes(locked)
    with pytest.raises(CredentialsError, match="is encrypted"):
        load_identity(issued.cert, tmp_path / "locked.key")
    # C2PA's own certificate profile: a signer certificate for web servers only is refused.
    server_only = issue(tmp_path / "tls", "Web Server", usages=[ExtendedKeyUsageOID.SERVER_AUTH])
    with pytest.raises(CredentialsError, match="^C2PA refuses to sign with the certificate 'Web Server'"):
        load_identity(server_only.cert, server_only.key)
    # The same check at a given time: valid today, expired in a year.
    with pytest.raises(CredentialsError, match="expired on"):
        load_identity(issued.cert, issued.key, now=datetime.now(timezone.utc) + timedelta(days=365))


def _signed_outputs(folder: Path, signer: ContentSigner) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in ("a.jpg", "b.png"):
        fmt = output_format_for(name)
        data = signer.sign(encode(_photo(), fmt, Provenance("residual_encoder-abc", f"box/{name}")), fmt.pil_format, Origin.of(f"box/{name}", _source_png(), "residual_encoder-abc", "PNG"))
        (folder / name).write_bytes(data)
        paths[name] = folder / name
    return paths


def test_verify_reads_back_signed_outputs_and_exits_2_for_any_that_does_not(tmp_path: Path, signer: ContentSigner, issued, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    from flows.cli import main

    paths = _signed_outputs(tmp_path / "out", signer)
    assert main(["verify", str(tmp_path / "out")]) == 0
    said = capsys.readouterr().out
    assert "a.jpg: verified; signed by Archive Signer (Test Archive); from a.jpg; actions c2pa.opened, c2pa.color_adjustments (compositeWithTrainedAlgorithmicMedia); model residual_encoder-abc, source box/a.jpg" in said
    assert "label: compositeWithTrainedAlgorithmicMedia, model residual_encoder-abc, source box/a.jpg" in said
    assert said.rstrip().endswith("colorize verify: 2 of 2 verified")
    # Trusted only under the authority that issued the signer's certificate.
    (tmp_path / "ca.pem").write_bytes(issued.anchor)
    assert main(["verify", str(paths["a.jpg"]), "--trust", str(tmp_path / "ca.pem")]) == 0
    assert "(trusted)" in capsys.readouterr().out
    other = issue(tmp_path / "other", "Someone Else")
    (tmp_path / "other.pem").write_bytes(other.anchor)
    assert main(["verify", str(paths["a.jpg"]), "--trust", str(tmp_path / "other.pem")]) == 2
    assert "NOT verified (signed by Archive Signer (Test Archive), under none of the trusted authorities)" in capsys.readouterr().out
    # An unsigned output and a changed one: named, exit 2.
    (tmp_path / "out" / "plain.jpg").write_bytes(encode(_photo(), output_format_for("plain.jpg"), Provenance("m", "plain.jpg")))
    changed = bytearray(paths["b.png"].read_bytes())
    changed[changed.rindex(b"IDAT") + 20] ^= 1
    paths["b.png"].write_bytes(bytes(changed))
    assert main(["verify", str(tmp_path / "out")]) == 2
    said = capsys.readouterr().out
    assert "plain.jpg: NOT verified (no Content Credentials)" in said and "b.png: NOT verified (Content Credentials do not validate:" in said
    assert "colorize verify: 1 of 3 verified" in said


@pytest.mark.parametrize("device_jpeg", [False, True])
def test_an_archive_shard_signs_each_output_last_and_records_it(tmp_path: Path, signer: ContentSigner, tiny_checkpoint: Path, device_jpeg: bool) -> None:
    """Through the archive's path (Pillow, and the device-JPEG path run on the CPU): every output
    that can carry Content Credentials validates, names its source and the model; a BMP is
    written unsigned and its row says why; each row says what was done."""
    from colorize_core.archive.history import read_output_rows
    from colorize_core.archive.listing import list_images
    from colorize_core.archive.shards import colorize_shard
    from colorize_core.model.infer import Colorizer
    from colorize_core.storage.stores import open_store

    src = tmp_path / "src"
    (src / "box").mkdir(parents=True)
    for suffix, fmt in ((".jpg", "JPEG"), (".png", "PNG"), (".tif", "TIFF"), (".webp", "WEBP"), (".bmp", "BMP")):
        _photo("L").resize((64, 48)).save(src / "box" / f"photo{suffix}", fmt)
    colorizer = Colorizer.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=4)
    items = list_images(open_store(str(src)))
    outcome = colorize_shard(str(src), str(tmp_path / "out"), items, colorizer, run_id="r", shard=0, signer=signer, device_jpeg=device_jpeg)
    assert outcome.counts["ok"] == 5
    rows = {r["key"]: r for r in read_output_rows(str(tmp_path / "out"))}
    for key, row in rows.items():
        data = (tmp_path / "out" / row["output_key"]).read_bytes()
        if key.endswith(".bmp"):
            assert row["credentials"] == "unsigned: BMP cannot carry Content Credentials"
            continue
        assert row["credentials"] == "signed", key
        media = SIGNABLE[Image.open(io.BytesIO(data)).format]
        report = read_credentials(data, media)
        assert report.valid, (key, report.failures)
        assert (report.source_key, report.model_id) == (key, colorizer.model_id)
        assert report.source_sha256 == hashlib.sha256((src / key).read_bytes()).hexdigest()
        assert report.actions == ("c2pa.opened", ACTION)


def test_without_a_signer_nothing_changes(tmp_path: Path, tiny_checkpoint: Path) -> None:
    from colorize_core.archive.history import read_output_rows
    from colorize_core.archive.listing import list_images
    from colorize_core.archive.shards import colorize_shard
    from colorize_core.model.infer import Colorizer
    from colorize_core.storage.stores import open_store

    (tmp_path / "src").mkdir()
    _photo("L").save(tmp_path / "src" / "a.jpg")
    colorizer = Colorizer.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=4)
    colorize_shard(str(tmp_path / "src"), str(tmp_path / "out"), list_images(open_store(str(tmp_path / "src"))), colorizer, run_id="r", shard=0)
    (row,) = read_output_rows(str(tmp_path / "out"))
    assert row["credentials"] is None
    assert not read_credentials((tmp_path / "out" / "a.jpg").read_bytes(), "image/jpeg").present


@pytest.mark.usefixtures("prefect_harness")
def test_archive_and_images_sign_with_the_operators_identity_and_verify_reads_them_back(
    tmp_path: Path, issued, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]  # type: ignore[no-untyped-def]
) -> None:
    from colorize_core.archive.history import read_output_rows
    from flows.cli import main

    src = tmp_path / "bw"
    src.mkdir()
    for name in ("a.jpg", "b.png", "c.bmp", "d.tif", "e.webp"):
        _photo("L").resize((64, 48)).save(src / name)
    signing = ["--c2pa-cert", str(issued.cert), "--c2pa-key", str(issued.key)]
    common = ["--checkpoint", str(tiny_checkpoint), "--allow-untrained", "--device", "cpu"]
    assert main(["archive", str(src), "--dest", str(tmp_path / "out"), *common, "--workers", "1", *signing]) == 0
    rows = {r["key"]: r["credentials"] for r in read_output_rows(str(tmp_path / "out"))}
    signed = ("a.jpg", "b.png", "d.tif", "e.webp")
    assert rows == {**{name: "signed" for name in signed}, "c.bmp": "unsigned: BMP cannot carry Content Credentials"}
    assert main(["images", str(src), "--out", str(tmp_path / "images"), *common, *signing]) == 0
    assert "5 colorized (4 signed), 0 failed" in capsys.readouterr().out
    (tmp_path / "ca.pem").write_bytes(issued.anchor)
    for folder in ("out", "images"):
        assert main(["verify", *(str(tmp_path / folder / name) for name in signed), "--trust", str(tmp_path / "ca.pem")]) == 0
        said = capsys.readouterr().out
        assert said.count("verified; signed by Archive Signer (Test Archive) (trusted)") == 4, said
    assert main(["verify", str(tmp_path / "out" / "c.bmp")]) == 2  # unsigned, and said so
    assert "c.bmp: NOT verified (a BMP file cannot carry Content Credentials)" in capsys.readouterr().out


def test_an_expired_certificate_stops_the_run_in_one_line_before_any_output(tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from flows.cli import main

    expired = issue(tmp_path / "old", "Old Signer", days=(-60, -1))
    (tmp_path / "bw").mkdir()
    _photo("L").save(tmp_path / "bw" / "a.png")
    for command in (["archive", str(tmp_path / "bw"), "--dest", str(tmp_path / "out")], ["images", str(tmp_path / "bw"), "--out", str(tmp_path / "out")]):
        args = [*command, "--checkpoint", str(tiny_checkpoint), "--c2pa-cert", str(expired.cert), "--c2pa-key", str(expired.key)]
        assert main(args) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "the C2PA certificate 'Old Signer'" in err[0] and "expired on" in err[0], err
        assert not (tmp_path / "out").exists()
    assert main(["images", str(tmp_path / "bw"), "--out", str(tmp_path / "out"), "--checkpoint", str(tiny_checkpoint), "--c2pa-cert", str(expired.cert)]) == 1
    assert "give --c2pa-cert and --c2pa-key together" in capsys.readouterr().err


@pytest.mark.usefixtures("prefect_harness")
def test_the_flow_itself_refuses_an_expired_certificate_before_its_lease(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """A deployment's run gets no command-line check: the flow makes it before anything else."""
    from flows.colorize_archive import colorize_archive

    expired = issue(tmp_path / "old", "Old Signer", days=(-60, -1))
    (tmp_path / "bw").mkdir()
    _photo("L").save(tmp_path / "bw" / "a.png")
    with pytest.raises(CredentialsError, match="expired on"):
        colorize_archive(str(tmp_path / "bw"), str(tmp_path / "out"), checkpoint=str(tiny_checkpoint), device="cpu", c2pa_cert=str(expired.cert), c2pa_key=str(expired.key))
    assert not (tmp_path / "out").exists()


@pytest.mark.usefixtures("prefect_harness")
def test_a_deployment_signs_with_the_identity_in_a_prefect_secret_block(tmp_path: Path, issued, tiny_checkpoint: Path) -> None:  # type: ignore[no-untyped-def]
    """Workers without the PEM files read the identity from a Secret block each shard task
    loads; the run's parameters carry only its name. A missing or malformed block is one line."""
    import uuid

    from prefect.blocks.system import Secret

    from colorize_core.archive.history import read_output_rows
    from flows.colorize_archive import colorize_archive

    name = f"archive-signer-{uuid.uuid4().hex[:8]}"
    Secret(value={"cert": issued.cert.read_text(), "key": issued.key.read_text()}).save(name)
    (tmp_path / "bw").mkdir()
    _photo("L").resize((64, 48)).save(tmp_path / "bw" / "a.jpg")
    kwargs = {"checkpoint": str(tiny_checkpoint), "device": "cpu", "allow_untrained": True}
    colorize_archive(str(tmp_path / "bw"), str(tmp_path / "out"), c2pa_secret=name, **kwargs)
    assert [r["credentials"] for r in read_output_rows(str(tmp_path / "out"))] == ["signed"]
    report = read_credentials((tmp_path / "out" / "a.jpg").read_bytes(), "image/jpeg", trust_anchors=issued.anchor)
    assert report.trusted and report.source_key == "a.jpg"
    with pytest.raises(CredentialsError, match=f"^no Prefect Secret block named 'missing-{name}'"):
        colorize_archive(str(tmp_path / "bw"), str(tmp_path / "out2"), c2pa_secret=f"missing-{name}", **kwargs)
    Secret(value="just a string").save(f"bad-{name}")
    with pytest.raises(CredentialsError, match="does not hold"):
        colorize_archive(str(tmp_path / "bw"), str(tmp_path / "out3"), c2pa_secret=f"bad-{name}", **kwargs)
    assert not (tmp_path / "out2").exists() and not (tmp_path / "out3").exists()


def test_a_signed_source_keeps_its_manifest_through_the_archive_and_images_paths(tmp_path: Path, signer: ContentSigner, tiny_checkpoint: Path) -> None:
    """Decoding turns the image upright (a copy that forgets its format): the source's own
    manifest must still be found and kept as the ingredient's, on Pillow's path and in `images`."""
    from colorize_core.archive.listing import list_images
    from colorize_core.archive.shards import colorize_shard
    from colorize_core.local_files import colorize_files, expand_inputs
    from colorize_core.model.infer import Colorizer
    from colorize_core.storage.stores import open_store

    src = tmp_path / "src"
    src.mkdir()
    gray = io.BytesIO()
    _photo("L").resize((64, 48)).save(gray, "PNG")
    (src / "camera.png").write_bytes(signer.sign(gray.getvalue(), "PNG", Origin.of("camera.png", b"", "a camera's own")))
    colorizer = Colorizer.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=4)
    colorize_shard(str(src), str(tmp_path / "out"), list_images(open_store(str(src))), colorizer, run_id="r", shard=0, signer=signer)
    colorize_files(expand_inputs([src]), tmp_path / "images", colorizer, signer=signer)
    for folder in ("out", "images"):
        report = read_credentials((tmp_path / folder / "camera.png").read_bytes(), "image/png")
        assert report.valid and report.source_manifest and report.ingredient == "camera.png", (folder, report)
