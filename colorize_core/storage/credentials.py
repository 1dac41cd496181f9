"""Content Credentials (C2PA): a colorized output signed with where it came from and what
changed it, and such a signature read back.

The XMP label (provenance.py) says the same things, but anyone can edit or strip it without a
trace. A C2PA manifest is signed: its claim covers a hash of the file's bytes and the manifest's
assertions, signed with the operator's certificate, so a changed pixel or a changed claim makes
validation fail, and the signer is named by a certificate chain a reader can check against the
authorities it trusts. Written through the Content Authenticity Initiative's own library
(`c2pa-python`, bindings to c2pa-rs), which also reads it back.

What a signed output's manifest holds (`_manifest`):
- the source photo as its `parentOf` ingredient (title: its key's file name; format). When the
  source carried a manifest of its own, the ingredient is made from the source's bytes and keeps
  that manifest (c2pa-rs reads it); otherwise it is named in the manifest only (no need to hold a
  whole scan in memory until its output is written);
- a `c2pa.actions` assertion: `c2pa.opened` (the ingredient), then `c2pa.color_adjustments`
  with IPTC's digitalSourceType `compositeWithTrainedAlgorithmicMedia` (the photograph's luminance
  with colour a trained model predicted: the same term as the XMP label), softwareAgent
  "colorize <version>" and the description "colorized by a trained model";
- our assertion `LABEL`: the model id, the source's key and the SHA-256 of the source's bytes
  (the ingredient assertion has no hash of the ingredient's data unless the data is embedded).

Signing comes last, after the XMP label and the EXIF copy are in the bytes, since any later
change would break it. Formats: JPEG, PNG, TIFF and WebP (`SIGNABLE`); BMP cannot carry a
manifest and stays unsigned (the caller records why). Signing costs 5-8 ms a 0.3 MP output and
26-127 ms a 6 MP one on 2 CPU cores (BENCHMARKS.md: hashing and copying the file through
c2pa's streams; no thumbnail is embedded).
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from colorize_core.storage.provenance import DIGITAL_SOURCE_TYPE, software

LABEL = "com.github.colorize-archive.colorization"
ACTION = "c2pa.color_adjustments"
DESCRIPTION = "colorized by a trained model"
# Pillow's format names of the outputs a manifest can be embedded in, and their media types.
SIGNABLE = {"JPEG": "image/jpeg", "PNG": "image/png", "TIFF": "image/tiff", "WEBP": "image/webp"}
# Media types of the sources (by Pillow format) an ingredient names; others are named by suffix.
_SOURCE_TYPES = {**SIGNABLE, "BMP": "image/bmp", "GIF": "image/gif"}


class CredentialsError(ValueError):
    """The signing identity cannot sign (unreadable, expired, mismatched, refused by c2pa): one
    line that says which file and what to do. Raised before a run writes anything."""


class NotSignable(Exception):
    """This output's format cannot carry a C2PA manifest (the reason is the message)."""


@dataclass(frozen=True)
class SigningIdentity:
    """A PEM certificate chain (the signer's certificate first), its private key, the algorithm
    they make (es256, es384, ps256, ed25519) and an optional timestamp authority."""

    chain_pem: bytes
    key_pem: bytes = field(repr=False)  # never in a log line or an exception's text
    alg: str
    subject: str  # the signer certificate's common name, for messages
    tsa_url: str | None = None


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CredentialsError(f"cannot read the C2PA {what} {path}: {exc.strerror or exc}") from None


def _common_name(cert: Any) -> str:
    from cryptography.x509.oid import NameOID

    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def _algorithm(key: Any, key_file: str | Path) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in ("secp256r1", "secp384r1"):
        return "es256" if key.curve.name == "secp256r1" else "es384"
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    raise CredentialsError(f"the C2PA key {key_file} is of a kind C2PA does not sign with: give an EC P-256 (ES256), P-384 (ES384), RSA (PS256) or Ed25519 key")


def load_identity(cert_file: str | Path, key_file: str | Path, tsa_url: str | None = None, *, now: datetime | None = None) -> SigningIdentity:
    """Read and check a signing identity from its files (`identity_from_pem`)."""
    return identity_from_pem(_read(cert_file, "certificate"), _read(key_file, "key"), tsa_url, cert_file=cert_file, key_file=key_file, now=now)


def identity_from_pem(
    chain_pem: bytes, key_pem: bytes, tsa_url: str | None = None, *, cert_file: str | Path, key_file: str | Path, now: datetime | None = None
) -> SigningIdentity:
    """Check a signing identity: the chain parses, the key is the certificate's, the certificate
    is valid now, and c2pa signs a test image with it (its own checks of the certificate's
    profile). Any failure is a CredentialsError in one line naming `cert_file` or `key_file`
    (where the PEM came from: a file, or a secret)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
    except ValueError:
        raise CredentialsError(f"the C2PA certificate {cert_file} is not a PEM certificate chain") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise CredentialsError(f"the C2PA key {key_file} is encrypted: give it unencrypted (kept readable by this user only)") from None
    except ValueError:
        raise CredentialsError(f"the C2PA key {key_file} is not a PEM private key") from None
    leaf = chain[0]
    name = _common_name(leaf)
    if key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise CredentialsError(f"the C2PA key {key_file} is not the key of the certificate {name!r} ({cert_file})")
    now = now or datetime.now(timezone.utc)
    if now > leaf.not_valid_after_utc:
        raise CredentialsError(f"the C2PA certificate {name!r} ({cert_file}) expired on {leaf.not_valid_after_utc:%Y-%m-%d}: renew it, or run without signing")
    if now < leaf.not_valid_before_utc:
        raise CredentialsError(f"the C2PA certificate {name!r} ({cert_file}) is not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
    identity = SigningIdentity(chain_pem, key_pem, _algorithm(key, key_file), name, tsa_url or None)
    try:  # without the timestamp authority: checking the certificate needs no call to it
        ContentSigner(replace(identity, tsa_url=None)).sign(_test_png(), "PNG", Origin.of("check.png", b"", "test"))
    except Exception as exc:  # noqa: BLE001 - c2pa's refusal, whatever its type, is the identity's fault
        raise CredentialsError(f"C2PA refuses to sign with the certificate {name!r} ({cert_file}): {_first_line(exc)}") from exc
    return identity


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines[:2]) if lines else type(exc).__name__


def _test_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (128, 100, 80)).save(buf, "PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class Origin:
    """The source an output was made from, as its manifest names it (`of` makes one)."""

    key: str
    sha256: str  # of the source's bytes
    model_id: str
    pil_format: str | None = None  # the source's format, when known
    own_manifest: bytes | None = None  # the source's bytes, kept only when it carries a manifest of its own

    @classmethod
    def of(cls, key: str, data: bytes, model_id: str, pil_format: str | None = None) -> Origin:
        """Hash the source now; keep its bytes only if it has a manifest to pass on (a scan's
        bytes are not held until its output is written otherwise)."""
        pil_format = pil_format or sniff_format(data)  # a decoded image's own `format` is gone once it is turned upright
        own = data if carries_manifest(data) and pil_format in _SOURCE_TYPES else None
        return cls(key, hashlib.sha256(data).hexdigest(), model_id, pil_format, own)


@dataclass(frozen=True)
class SigningFiles:
    """Where a signing identity lies (what a run's parameters carry: paths, never the key)."""

    cert: str
    key: str
    tsa_url: str | None = None

    def load(self) -> SigningIdentity:
        return load_identity(self.cert, self.key, self.tsa_url)


def signing_files(cert: str | None, key: str | None, tsa_url: str | None = None) -> SigningFiles | None:
    """The identity a run's parameters name, or None when they name none (outputs unsigned)."""
    if not cert and not key:
        return None
    if not (cert and key):
        raise CredentialsError("give the C2PA certificate and its key together (c2pa_cert and c2pa_key)")
    return SigningFiles(cert, key, tsa_url or None)


def sniff_format(data: bytes) -> str | None:
    """The file's format from its header (Pillow reads no pixels here)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.format
    except Exception:  # noqa: BLE001 - not an image Pillow knows: the ingredient names no format
        return None


def carries_manifest(data: bytes) -> bool:
    """True when `data` may hold a C2PA manifest store (a JUMBF box labelled "c2pa"): cheap, and
    false positives only cost keeping the bytes for the ingredient."""
    return b"jumb" in data and b"c2pa" in data


def _title(origin: Origin) -> str:
    return origin.key.rsplit("/", 1)[-1]


def _manifest(origin: Origin, with_ingredient_json: bool) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "claim_generator_info": [{"name": "colorize", "version": software().partition(" ")[2] or "unknown"}],
        "title": _title(origin),
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {"action": "c2pa.opened", "parameters": {"ingredientIds": ["source"]}},
                        {"action": ACTION, "digitalSourceType": DIGITAL_SOURCE_TYPE, "softwareAgent": {"name": software()}, "description": DESCRIPTION},
                    ]
                },
            },
            {"label": LABEL, "data": {"model_id": origin.model_id, "source_key": origin.key, "source_sha256": origin.sha256}},
        ],
    }
    if with_ingredient_json:
        manifest["ingredients"] = [_ingredient(origin)]
    return manifest


def _ingredient(origin: Origin) -> dict[str, Any]:
    """The source as the `parentOf` ingredient that `c2pa.opened` names (its label "source")."""
    ingredient = {"title": _title(origin), "relationship": "parentOf", "label": "source"}
    media = _SOURCE_TYPES.get(origin.pil_format or "")
    if media:
        ingredient["format"] = media
    return ingredient


@dataclass
class ContentSigner:
    """Signs outputs with one identity; safe to share between I/O threads (each thread has its
    own native signer: c2pa's are not documented as shareable)."""

    identity: SigningIdentity
    _local: threading.local = field(default_factory=threading.local, repr=False)

    def _signer(self) -> Any:
        signer = getattr(self._local, "signer", None)
        if signer is None:
            import c2pa

            alg = getattr(c2pa.C2paSigningAlg, self.identity.alg.upper())
            tsa = self.identity.tsa_url.encode() if self.identity.tsa_url else None
            self._local.context = c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}}})
            signer = self._local.signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(alg, self.identity.chain_pem, self.identity.key_pem, tsa))
        return signer

    def sign(self, data: bytes, pil_format: str, origin: Origin) -> bytes:
        """`data` (an encoded, labelled output) with a manifest embedded and signed. NotSignable
        for a format that cannot carry one."""
        import c2pa

        media = SIGNABLE.get(pil_format)
        if media is None:
            raise NotSignable(f"{pil_format} cannot carry Content Credentials")
        signer = self._signer()
        own = origin.own_manifest
        with c2pa.Builder(json.dumps(_manifest(origin, with_ingredient_json=own is None)), self._local.context) as builder:
            if own is not None:  # the source's own manifest is read from its bytes and kept as the ingredient's
                builder.add_ingredient(json.dumps(_ingredient(origin)), _SOURCE_TYPES[origin.pil_format or ""], io.BytesIO(own))
            dest = io.BytesIO()
            builder.sign(signer, media, io.BytesIO(data), dest)
        return dest.getvalue()


@dataclass(frozen=True)
class CredentialsReport:
    """What a file's Content Credentials say, for `colorize verify`."""

    present: bool
    state: str = ""  # c2pa's validation state: Valid (signature and hashes good), Trusted (and a trusted signer), Invalid
    signer: str = ""  # the signing certificate's common name and issuer
    ingredient: str = ""  # the parent ingredient's title
    actions: tuple[str, ...] = ()
    digital_source_type: str = ""  # what the actions say made the content (IPTC's term)
    software_agent: str = ""
    model_id: str = ""
    source_key: str = ""
    source_sha256: str = ""
    source_manifest: bool = False  # the ingredient carries the source's own manifest
    failures: tuple[str, ...] = ()  # c2pa's failure codes and explanations (an untrusted signer is one)

    @property
    def valid(self) -> bool:
        """The signature and every hash check out (the signer may not be one the reader trusts)."""
        return self.present and self.state in ("Valid", "Trusted")

    @property
    def trusted(self) -> bool:
        """Valid, and signed by a certificate that chains to a trust anchor the reader was given."""
        return self.present and self.state == "Trusted"


def read_credentials(data: bytes, media_type: str, trust_anchors: bytes | None = None) -> CredentialsReport:
    """The active manifest of `data` and whether it validates (against `trust_anchors`, PEM
    certificates, when given: then a good signature from an untrusted signer is a failure)."""
    import c2pa

    settings: dict[str, Any] = {}
    if trust_anchors:
        settings = {"trust": {"trust_anchors": trust_anchors.decode()}, "verify": {"verify_trust": True}}
    try:
        with c2pa.Context.from_dict(settings) as context:
            reader = c2pa.Reader.try_create(media_type, io.BytesIO(data), context=context)
            if reader is None:
                return CredentialsReport(present=False)
            with reader:
                store = json.loads(reader.json())
                state = reader.get_validation_state() or ""
                results = reader.get_validation_results() or {}
    except c2pa.C2paError as exc:
        return CredentialsReport(present=True, state="Invalid", failures=(_first_line(exc),))
    manifest = store.get("manifests", {}).get(store.get("active_manifest", ""), {})
    ours = next((a.get("data", {}) for a in manifest.get("assertions", []) if a.get("label") == LABEL), {})
    listed = [a for x in manifest.get("assertions", []) if x.get("label", "").startswith("c2pa.actions") for a in x.get("data", {}).get("actions", [])]
    made = next((a for a in listed if a.get("digitalSourceType")), {})
    agent = made.get("softwareAgent", "")
    parents = [i for i in manifest.get("ingredients", []) if i.get("relationship") == "parentOf"]
    info = manifest.get("signature_info", {})
    failures = tuple(f"{f.get('code')}: {f.get('explanation', '')}".strip() for f in results.get("activeManifest", {}).get("failure", []))
    return CredentialsReport(
        present=True,
        state=state,
        signer=f"{info.get('common_name', '')} ({info.get('issuer', '')})" if info else "",
        ingredient=parents[0].get("title", "") if parents else "",
        actions=tuple(a.get("action", "") for a in listed),
        digital_source_type=made.get("digitalSourceType", ""),
        software_agent=agent.get("name", "") if isinstance(agent, dict) else str(agent),
        model_id=str(ours.get("model_id", "")),
        source_key=str(ours.get("source_key", "")),
        source_sha256=str(ours.get("source_sha256", "")),
        source_manifest=bool(parents and parents[0].get("active_manifest")),
        failures=failures,
    )
