"""One run per destination at a time: a lease object in the destination.

`DEST/_colorize/lease.json` names its holder (host, pid, run id), when it was taken, its last
heartbeat and when it expires. It is taken atomically (S3 conditional PutObject with
`If-None-Match: *`; locally a hard link, which fails if the file exists), renewed by a heartbeat
thread while the run lives (`If-Match` on the lease's own etag, so a run that lost its lease
knows it), and deleted at the end. A holder that crashed stops renewing: its lease expires after
`ttl_s`, and at once when it was a process of this host that no longer exists. A second run
raises `DestinationBusy`, naming the holder, or waits for the lease with `wait_s`.

A conditional write whose reply was lost is retried and then refused (the first attempt had
succeeded): every refusal is therefore checked against the lease as it now reads, and a lease
that names this process and run is ours.

All of it rests on the store honouring conditional writes. Some S3-compatible stores accept the
headers and ignore them, which would let every run "take" the lease at once: before taking it, a
run writes a probe object (`_colorize/probe-<run id>`) twice with `If-None-Match: *`, and a store
that does not refuse the second write stops the run with `ConditionalWritesIgnored`, naming the
store and `--no-lease` (runs without exclusion: unsafe).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from types import TracebackType

from colorize_core.archive.layout import LEASE_KEY
from colorize_core.storage.errors import STOP, RetryPolicy, run_stop
from colorize_core.storage.objects import ObjectNotFound, ObjectStore
from colorize_core.storage.procs import pid_gone, this_host
from colorize_core.storage.stores import open_store

DEFAULT_TTL_S = 600.0
log = logging.getLogger(__name__)


PROBE_PREFIX = "_colorize/probe-"  # + run id: the conditional-write check, deleted at once


class DestinationBusy(RuntimeError):
    """Another run holds the destination's lease."""


class ConditionalWritesIgnored(RuntimeError):
    """The destination's store does not refuse a create of an existing object: no lease can
    keep two runs apart on it."""


def check_conditional_writes(store: ObjectStore, run_id: str) -> None:
    """Raise ConditionalWritesIgnored unless `store` refuses a second create of the same key.
    A first create refused as well means the probe of a run with this id is left over (the run
    crashed between its two writes): the second is then the test."""
    key = f"{PROBE_PREFIX}{run_id}"
    try:
        store.create(key, b"first")
        second = store.create(key, b"second")
    finally:
        try:
            store.delete(key)
        except ObjectNotFound:
            pass
        except Exception as exc:  # noqa: BLE001 - a stray probe is harmless; the check's answer is what counts
            log.warning("could not delete the probe %s on %s: %s", key, store.uri, exc)
    if second is not None:
        raise ConditionalWritesIgnored(
            f"{store.uri} does not honour conditional writes (a second create of {key} with If-None-Match was not refused), "
            "so no lease can keep two runs apart on it; to run anyway without exclusion, pass --no-lease "
            "(unsafe: two runs at once may write the same outputs twice)"
        )


@dataclass(frozen=True)
class LeaseInfo:
    host: str
    pid: int
    run_id: str
    acquired_at: str  # ISO times, UTC
    heartbeat_at: str
    expires_at: str

    def expired(self, now: datetime) -> bool:
        return datetime.fromisoformat(self.expires_at) <= now

    def holder_gone(self) -> bool:
        """The holder was a process of this host that no longer exists (killed, crashed)."""
        return pid_gone(self.host, self.pid)

    def is_mine(self, run_id: str) -> bool:
        return self.run_id == run_id and self.pid == os.getpid() and self.host == this_host()

    def describe(self) -> str:
        return f"run {self.run_id} (pid {self.pid} on {self.host}, since {self.acquired_at}, lease expires {self.expires_at})"


def read_lease(dest: str | ObjectStore) -> tuple[LeaseInfo, str] | None:
    """The destination's current lease and its etag, or None when nobody holds it."""
    store = open_store(dest) if isinstance(dest, str) else dest
    try:
        etag = store.etag(LEASE_KEY)
        data = store.read(LEASE_KEY)
    except ObjectNotFound:
        return None
    try:
        return LeaseInfo(**json.loads(data)), etag
    except (ValueError, TypeError):
        return _unknown("unreadable lease"), etag  # a foreign or damaged file: expired, so it can be taken over


def _unknown(what: str) -> LeaseInfo:
    epoch = datetime.fromtimestamp(0, timezone.utc).isoformat()
    return LeaseInfo("?", 0, what, epoch, epoch, epoch)


class Lease:
    """`with Lease(dest, run_id):` holds the destination for the block, or raises DestinationBusy."""

    def __init__(self, dest: str, run_id: str, *, ttl_s: float = DEFAULT_TTL_S, wait_s: float = 0.0, poll_s: float = 5.0) -> None:
        self.store = open_store(dest)
        self.run_id, self.ttl_s, self.wait_s, self.poll_s = run_id, ttl_s, wait_s, poll_s
        self.acquired_at = ""
        self.etag: str | None = None
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self) -> bytes:
        now = datetime.now(timezone.utc)
        info = LeaseInfo(
            this_host(), os.getpid(), self.run_id, self.acquired_at, now.isoformat(),
            (now + timedelta(seconds=self.ttl_s)).isoformat(),
        )  # fmt: skip
        return json.dumps(asdict(info)).encode()

    def _ours(self, store: ObjectStore | None = None) -> str | None:
        """The lease's etag if it names this run (a refused write that had in fact succeeded)."""
        current = read_lease(store or self.store)
        return current[1] if current is not None and current[0].is_mine(self.run_id) else None

    def _try_take(self) -> LeaseInfo | None:
        """Take the lease if free or abandoned; else return its holder."""
        for _ in range(3):  # the lease may come and go between our calls
            self.etag = self.store.create(LEASE_KEY, self._body())
            if self.etag:
                return None
            current = read_lease(self.store)
            if current is None:
                continue  # released between the two calls
            holder, etag = current
            if holder.is_mine(self.run_id):  # our create had succeeded; its reply was lost
                self.etag = etag
                return None
            if not (holder.expired(datetime.now(timezone.utc)) or holder.holder_gone()):
                return holder
            self.etag = self.store.replace(LEASE_KEY, self._body(), etag) or self._ours()  # one taker wins
            if self.etag:
                log.warning("took over the lease of %s: it was abandoned", holder.describe())
                return None
        current = read_lease(self.store)
        return current[0] if current is not None else _unknown("a run that keeps taking and releasing it")

    def acquire(self) -> None:
        check_conditional_writes(self.store, self.run_id)  # before the first create: an ignoring store would overwrite a holder's lease
        deadline = time.monotonic() + self.wait_s
        while True:
            self.acquired_at = datetime.now(timezone.utc).isoformat()
            holder = self._try_take()
            if holder is None:
                break
            if time.monotonic() >= deadline or STOP.is_set():
                raise DestinationBusy(
                    f"{self.store.uri} is being colorized by {holder.describe()}; "
                    "let it finish, or wait for it with --wait SECONDS"
                )
            STOP.wait(min(self.poll_s, max(0.0, deadline - time.monotonic())))
        self._thread = threading.Thread(target=self._heartbeat, name="lease-heartbeat", daemon=True)
        self._thread.start()

    def _heartbeat(self) -> None:
        # Each renewal gives up after a quarter of the lease's life, so that the next one still
        # comes before it expires.
        store = self.store.with_retries(RetryPolicy(total_s=self.ttl_s / 4))
        while not self._stop.wait(self.ttl_s / 4):
            try:
                etag = store.replace(LEASE_KEY, self._body(), self.etag or "") or self._ours(store)
            except Exception as exc:  # noqa: BLE001 - keep trying: the lease has ttl_s to live
                log.warning("could not renew the lease on %s: %s", self.store.uri, exc)
                continue
            if etag is None:
                self.lost = True
                run_stop(self.run_id).set()  # its shards stop before committing more work
                log.error("lost the lease on %s: another run took it over", self.store.uri)
                return
            self.etag = etag

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.lost or self.etag is None:
            return
        current = read_lease(self.store)
        if current is not None and current[0].is_mine(self.run_id):
            self.store.delete(LEASE_KEY)
        self.etag = None

    def __enter__(self) -> "Lease":
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
