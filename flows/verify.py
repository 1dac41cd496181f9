"""`colorize verify PATH...`: what each output's XMP label and Content Credentials say, and
whether they verify: a C2PA manifest present, its signature and hashes good (and, with
`--trust`, signed under one of the given authorities), naming its ingredient and actions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from colorize_core.storage.credentials import SIGNABLE, CredentialsReport, read_credentials, sniff_format
from colorize_core.storage.files import image_files
from colorize_core.storage.provenance import Label, read_label


@dataclass(frozen=True)
class Verified:
    path: Path
    label: Label | None
    credentials: CredentialsReport
    problem: str  # "" when the file verifies

    @property
    def ok(self) -> bool:
        return not self.problem


def verify_file(path: Path, trust: bytes | None = None) -> Verified:
    """One file's label and credentials; `problem` says why it does not verify."""
    none = CredentialsReport(present=False)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return Verified(path, None, none, f"cannot be read: {exc.strerror or exc}")
    label = read_label(data)
    fmt = sniff_format(data)
    media = SIGNABLE.get(fmt or "")
    if media is None:
        return Verified(path, label, none, f"a {fmt} file cannot carry Content Credentials" if fmt else "not an image")
    report = read_credentials(data, media, trust)
    if not report.present:
        problem = "no Content Credentials"
    elif not report.valid:
        problem = "Content Credentials do not validate: " + "; ".join(report.failures or ("invalid",))
    elif trust is not None and not report.trusted:
        problem = f"signed by {report.signer}, under none of the trusted authorities"
    else:
        problem = ""
    return Verified(path, label, report, problem)


def describe(v: Verified) -> str:
    """One line for a file: its verdict, then what the credentials and the label say."""
    c = v.credentials
    parts = [f"{v.path}: {'verified' if v.ok else 'NOT verified (' + v.problem + ')'}"]
    if c.present and c.valid:
        parts.append(f"signed by {c.signer}{' (trusted)' if c.trusted else ''}")
        parts.append(f"from {c.ingredient or '?'}{' (which had its own credentials)' if c.source_manifest else ''}")
        made = f" ({c.digital_source_type.rsplit('/', 1)[-1]})" if c.digital_source_type else ""
        parts.append(f"actions {', '.join(c.actions)}{made}")
        parts.append(f"model {c.model_id}, source {c.source_key} (sha256 {c.source_sha256[:12]}...)")
    if v.label is not None:
        kind = v.label.digital_source_type.rsplit("/", 1)[-1]
        parts.append(f"label: {kind}, model {v.label.model_id}, source {v.label.source_key}")
    else:
        parts.append("no label")
    return "; ".join(parts)


def verify_paths(paths: Sequence[str], trust: bytes | None = None) -> list[Verified]:
    """Each file named, and each image file under each folder named."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        files.extend(image_files(p) if p.is_dir() else [p])
    return [verify_file(f, trust) for f in files]
