"""Job claims and create-if-absent on the local store (no services)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from covidct_core.errors import CovidCtError, StorageError
from covidct_core.messages import Message
from covidct_core.stage import run_stage
from covidct_core.storage import LocalStore, put_bytes_if_absent
from covidct_ingest.claims import ClaimHeartbeat, claim_job, claim_key, latest_claim
from covidct_ingest.grouping import compute_job_id
from covidct_ingest.index import read_series_index
from covidct_ingest.stage import IngestStage
from covidct_ingest.triggers import object_event
from tests.samples import small_tcia_series

JOB = "0123456789abcdef"
LEASE = 600.0


def test_local_store_creates_only_once_and_keeps_the_first_bytes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    first = store.put_bytes_if_absent("a/b.json", b"first", {"k": "v"})
    assert first is not None and first.size == 5
    assert store.put_bytes_if_absent("a/b.json", b"second") is None
    assert store.get_bytes("a/b.json") == b"first"
    assert store.head("a/b.json").metadata == {"k": "v"}  # type: ignore[union-attr]
    assert [info.key for info in store.list()] == ["a/b.json"]  # no temporary left over


class PlainStore(LocalStore):
    """A store without the atomic operation: the helper falls back to head-then-put."""

    put_bytes_if_absent = None  # type: ignore[assignment]


def test_the_helper_falls_back_to_head_then_put(tmp_path: Path) -> None:
    store = PlainStore(tmp_path)
    assert put_bytes_if_absent(store, "k", b"1") is not None
    assert put_bytes_if_absent(store, "k", b"2") is None
    assert store.get_bytes("k") == b"1"


def test_the_first_claimer_wins_and_others_lose_while_the_claim_is_fresh(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path)
    assert latest_claim(store, JOB) is None
    assert claim_job(store, JOB, "a", LEASE, clock=lambda: 1000.0) == claim_key(JOB, 0)
    assert claim_job(store, JOB, "b", LEASE, clock=lambda: 1000.0) is None
    assert claim_job(store, JOB, "b", LEASE, clock=lambda: 1000.0 + LEASE - 1) is None
    claim = latest_claim(store, JOB)
    assert claim is not None and (claim.number, claim.owner) == (0, "a")


def test_an_abandoned_claim_is_taken_over_once_with_the_next_number(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    assert claim_job(store, JOB, "dead", LEASE, clock=lambda: 1000.0)
    later = 1000.0 + LEASE + 1
    assert claim_job(store, JOB, "b", LEASE, clock=lambda: later) == claim_key(JOB, 1)
    assert claim_job(store, JOB, "c", LEASE, clock=lambda: later) is None
    claim = latest_claim(store, JOB)
    assert claim is not None and (claim.number, claim.owner) == (1, "b")
    assert json.loads(store.get_bytes(claim_key(JOB, 0)))["owner"] == "dead"  # kept


def test_an_unreadable_claim_counts_as_abandoned(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_bytes(claim_key(JOB, 3), b"not json")
    store.put_bytes(f"done/ingest/series/{JOB}/claim-x.json", b"ignored")
    claim = latest_claim(store, JOB)
    assert claim is not None and (claim.number, claim.claimed_at) == (3, 0.0)
    assert claim_job(store, JOB, "b", LEASE, clock=lambda: 10.0 + LEASE)
    assert latest_claim(store, JOB).number == 4  # type: ignore[union-attr]


def test_the_heartbeat_keeps_a_long_assembly_claimed_and_a_dead_owner_loses_it(
    tmp_path: Path,
) -> None:
    """Renewed every 0.05 s, a claim with a 0.4 s lease outlives the lease many times over;
    once the beats stop (the owner died), another replica takes the job after one lease."""
    store = LocalStore(tmp_path)
    lease = 0.4
    key = claim_job(store, JOB, "owner", lease)
    assert key == claim_key(JOB, 0)
    with ClaimHeartbeat(store, key, "owner", interval=0.05) as beat:
        deadline = time.monotonic() + 3 * lease
        while time.monotonic() < deadline:
            assert claim_job(store, JOB, "other", lease) is None
            time.sleep(0.02)
    assert beat.beats >= 10
    claim = latest_claim(store, JOB)
    assert claim is not None and (claim.number, claim.owner) == (0, "owner")
    time.sleep(lease + 0.05)
    assert claim_job(store, JOB, "other", lease) == claim_key(JOB, 1)


class FlakyStore(LocalStore):
    """put_bytes fails twice, then works."""

    failures = 2

    def put_bytes(self, key: str, data: bytes, metadata: dict[str, str] | None = None) -> Any:
        if self.failures:
            self.failures -= 1
            raise StorageError("the store is briefly away")
        return super().put_bytes(key, data, metadata)


def test_a_failed_renewal_is_retried_at_the_next_beat(tmp_path: Path) -> None:
    store = FlakyStore(tmp_path)
    key = claim_job(store, JOB, "owner", LEASE, clock=lambda: 5.0)
    assert key is not None
    with ClaimHeartbeat(store, key, "owner", interval=0.02, clock=lambda: 77.0) as beat:
        deadline = time.monotonic() + 5
        while beat.beats == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert store.failures == 0 and beat.beats >= 1
    assert latest_claim(store, JOB).claimed_at == 77.0  # type: ignore[union-attr]


def indexed_series(tmp_path: Path, samples_dir: Path) -> tuple[IngestStage, Message, str]:
    """A stage whose index holds the small series; its latest check and its job id."""
    inbox = LocalStore(tmp_path / "in", bucket="input")
    work = LocalStore(tmp_path / "work", bucket="work")
    stage = IngestStage(work, {"input": inbox, "work": work}.__getitem__, quiet_period=0.5)
    checks = []
    for i, path in enumerate(sorted(small_tcia_series(samples_dir).glob("*.dcm"))):
        info = inbox.put_bytes(f"s/{i}", path.read_bytes())
        item = {"bucket": "input", "key": info.key, "size": info.size}
        checks += run_stage(stage, object_event([item], "test"), work).outbound
    latest = max(checks, key=lambda c: str(c.message["generation"])).message
    entries = read_series_index(work, latest["series_key"])
    return stage, latest, compute_job_id(latest["series_key"], [e.instance_key for e in entries])


def test_a_check_defers_while_another_replica_holds_a_fresh_claim(
    tmp_path: Path, samples_dir: Path
) -> None:
    stage, check, job_id = indexed_series(tmp_path, samples_dir)
    assert claim_job(stage.work, job_id, "other-replica", LEASE)
    (deferred,) = stage.handle(check)
    assert deferred.routing_key == "ingest.assemble"
    assert deferred.delay_seconds == 2.0  # at least MIN_RECHECK_SECONDS
    assert deferred.message["attempt"] == 1 and deferred.message["force"] is False
    (again,) = stage.handle(deferred.message)
    assert again.message["attempt"] == 2
    assert list(stage.work.list("volumes/")) == []


def test_an_abandoned_claim_is_taken_over_and_the_job_assembled(
    tmp_path: Path, samples_dir: Path
) -> None:
    stage, check, job_id = indexed_series(tmp_path, samples_dir)
    assert claim_job(stage.work, job_id, "crashed-replica", LEASE, clock=lambda: 0.0)
    (ready,) = stage.handle(check)
    assert ready.routing_key == "segment.request" and ready.message["job_id"] == job_id
    claim = latest_claim(stage.work, job_id)
    assert claim is not None and (claim.number, claim.owner) == (1, check["message_id"])


def test_a_failed_assembly_gives_its_claim_up_so_the_retry_assembles_at_once(
    tmp_path: Path, samples_dir: Path
) -> None:
    stage, check, job_id = indexed_series(tmp_path, samples_dir)
    inbox = stage.store_for_bucket("input")
    kept = inbox.get_bytes("s/0")
    inbox.delete("s/0")  # an instance unreadable for a moment
    with pytest.raises(CovidCtError):
        stage.handle(check)
    assert latest_claim(stage.work, job_id) is None
    inbox.put_bytes("s/0", kept)
    (ready,) = stage.handle(check)  # the retry of the same message
    assert ready.routing_key == "segment.request"
