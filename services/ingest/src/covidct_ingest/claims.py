"""Job claims: among replicas that all decide to assemble the same job, exactly one does.

Before assembling job J a handler creates ``done/ingest/series/<J>/claim-<n>.json`` with a
conditional PUT (``If-None-Match: *``); only the handler whose PUT created the object
assembles. ``n`` starts at 0. A claim older than the lease, while J still has no completion
record, is taken as abandoned (its owner died mid-assembly): the next number ``n + 1`` is
claimed, again conditionally, so one taker wins that too. While it assembles, the owner
renews its claim (:class:`ClaimHeartbeat` rewrites ``claimed_at`` every quarter lease), so
the lease can be short (a dead owner's job waits one lease, not the longest assembly) and a
long assembly is never taken for abandoned. Only the owner ever rewrites a claim; an owner
whose assembly raised deletes its own claim so that its retry (or a deferred check) can
claim the job again at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from covidct_core.errors import CovidCtError, ObjectNotFoundError
from covidct_core.messages import utc_now_iso
from covidct_core.storage import ObjectStore, put_bytes_if_absent

log = structlog.get_logger()

CLAIM_STEM = "claim-"
JSON = {"content-type": "application/json"}


def claim_prefix(job_id: str) -> str:
    return f"done/ingest/series/{job_id}/{CLAIM_STEM}"


def claim_key(job_id: str, number: int) -> str:
    return f"{claim_prefix(job_id)}{number}.json"


@dataclass(frozen=True)
class Claim:
    number: int
    owner: str
    claimed_at: float  # seconds since the epoch, on the claimer's clock


def latest_claim(store: ObjectStore, job_id: str) -> Claim | None:
    """The highest-numbered claim of ``job_id``, or None when nobody claimed it yet."""
    prefix = claim_prefix(job_id)
    numbers = []
    for info in store.list(prefix):
        stem = info.key[len(prefix) :].removesuffix(".json")
        if stem.isdigit():
            numbers.append(int(stem))
    if not numbers:
        return None
    number = max(numbers)
    try:
        raw = json.loads(store.get_bytes(claim_key(job_id, number)))
        return Claim(number, str(raw["owner"]), float(raw["claimed_at"]))
    except (ObjectNotFoundError, ValueError, KeyError, TypeError):
        return Claim(number, "", 0.0)  # unreadable: treated as abandoned


def claim_job(
    store: ObjectStore,
    job_id: str,
    owner: str,
    lease_seconds: float,
    clock: Callable[[], float] = time.time,
) -> str | None:
    """Try to become the one handler that assembles ``job_id``: the key of the claim this
    handler created, or None when another handler holds the job."""
    current = latest_claim(store, job_id)
    now = clock()
    if current is None:
        number = 0
    elif now - current.claimed_at < lease_seconds:
        return None
    else:
        number = current.number + 1
        log.warning(
            "series_claim_abandoned",
            stage="ingest",
            job_id=job_id,
            claim=current.number,
            age_s=round(now - current.claimed_at, 1),
        )
    key = claim_key(job_id, number)
    created = put_bytes_if_absent(store, key, _claim_body(owner, now), JSON)
    return key if created is not None else None


def _claim_body(owner: str, now: float) -> bytes:
    return json.dumps({"owner": owner, "claimed_at": now, "at": utc_now_iso()}).encode()


class ClaimHeartbeat:
    """Renews the claim ``key`` (owned by ``owner``) every ``interval`` seconds on a daemon
    thread while the ``with`` block runs. A failed renewal is logged and tried again at the
    next beat: the claim only lapses if renewals keep failing for a whole lease."""

    def __init__(
        self,
        store: ObjectStore,
        key: str,
        owner: str,
        interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.key = key
        self.owner = owner
        self.interval = interval
        self.clock = clock
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="claim-heartbeat", daemon=True)

    def __enter__(self) -> ClaimHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.store.put_bytes(self.key, _claim_body(self.owner, self.clock()), JSON)
                self.beats += 1
            except CovidCtError as e:
                log.warning("series_claim_not_renewed", stage="ingest", key=self.key, error=str(e))


def release_claim(store: ObjectStore, key: str) -> None:
    """Give a claim up after a failed assembly; a failure to delete only delays a retry."""
    try:
        store.delete(key)
    except CovidCtError as e:
        log.warning("series_claim_not_released", stage="ingest", key=key, error=str(e))
