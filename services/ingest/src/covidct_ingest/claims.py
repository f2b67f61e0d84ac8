"""Job claims: among replicas that all decide to assemble the same job, exactly one does.

Before assembling job J a handler creates ``done/ingest/series/<J>/claim-<n>.json`` with a
conditional PUT (``If-None-Match: *``); only the handler whose PUT created the object
assembles. ``n`` starts at 0. A claim older than the lease, while J still has no completion
record, is taken as abandoned (its owner died mid-assembly): the next number ``n + 1`` is
claimed, again conditionally, so one taker wins that too. Claims are never overwritten; an
owner whose assembly raised deletes its own claim so that its retry (or a deferred check)
can claim the job again at once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from covidct_core.errors import CovidCtError, ObjectNotFoundError
from covidct_core.messages import utc_now_iso
from covidct_core.storage import ObjectStore, put_bytes_if_absent

log = structlog.get_logger()

CLAIM_STEM = "claim-"


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
    body = json.dumps({"owner": owner, "claimed_at": now, "at": utc_now_iso()}).encode()
    key = claim_key(job_id, number)
    created = put_bytes_if_absent(store, key, body, {"content-type": "application/json"})
    return key if created is not None else None


def release_claim(store: ObjectStore, key: str) -> None:
    """Give a claim up after a failed assembly; a failure to delete only delays a retry."""
    try:
        store.delete(key)
    except CovidCtError as e:
        log.warning("series_claim_not_released", stage="ingest", key=key, error=str(e))
