"""What crosses from the archive pipeline to the flows and the CLI, typed: the job one shard task
is given, what a shard did, what planning found, and the run's summary. Plain dataclasses (no
Prefect, no torch): a task returns them, a flow passes them on, Prefect pickles them as results.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from colorize_core.archive.vocabulary import COUNTS
from colorize_core.storage.credentials import SigningFiles


@dataclass(frozen=True)
class ShardJob:
    """One shard of a run's plan, and how to colorize it: the same for every shard of the run
    but `shard`."""

    plan: str  # the plan's URI (listing.write_plan)
    shard: int
    dest: str
    checkpoint: str
    run_id: str
    device: str = "auto"
    batch_size: int | None = None  # None: the device's default (model/defaults.py)
    label: bool = True  # each output says a trained model colorized it (storage/provenance.py)
    colour_photos: str = "skip"  # vocabulary.COLOUR_PHOTOS: skip real colour photos, or colorize them too
    signing: SigningFiles | None = None  # sign outputs' Content Credentials (storage/credentials.py): paths, never the key
    signing_secret: str | None = None  # or the name of the Prefect Secret block that holds the identity (flows/signing.py)

    def at(self, shard: int) -> ShardJob:
        return replace(self, shard=shard)


@dataclass
class ShardOutcome:
    """What one shard did, from its metadata rows (shards.py)."""

    shard: int
    counts: dict[str, int] = field(default_factory=dict)  # row status -> rows
    failures: list[tuple[str, str]] = field(default_factory=list)  # (source key, reason)
    samples: list[tuple[str, str]] = field(default_factory=list)  # (source key, output key), a few
    seconds: float = 0.0
    metadata_key: str = ""


@dataclass(frozen=True)
class PlanSummary:
    """What planning found: photos to do this run, and what it left out."""

    model_id: str
    todo: int
    already_done: int  # an ok row with this model, or skipped as colour by this decision; same etag
    known_failed: int  # known failures not retried (failures.py)
    shards: int


@dataclass
class ArchiveSummary:
    """What a colorize-archive run did: the counts vocabulary.py tells, and every failure."""

    model_id: str
    ok: int = 0
    failed: int = 0
    skipped: int = 0  # skipped as colour
    known_failed: int = 0
    already_done: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (source key, reason), in shard order

    @classmethod
    def of(cls, plan: PlanSummary, outcomes: Iterable[ShardOutcome]) -> ArchiveSummary:
        counts: Counter[str] = Counter()
        failures: list[tuple[str, str]] = []
        for o in sorted(outcomes, key=lambda o: o.shard):
            counts.update(o.counts)
            failures.extend((key, reason) for key, reason in o.failures)
        return cls(
            model_id=plan.model_id, ok=counts["ok"], failed=counts["failed"], skipped=counts["skipped"],
            known_failed=plan.known_failed, already_done=plan.already_done, failures=failures,
        )

    @property
    def counts(self) -> dict[str, int]:
        """The counts by vocabulary.COUNTS' keys (this class's field names), in its order."""
        return {key: getattr(self, key) for key, _, _ in COUNTS}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
