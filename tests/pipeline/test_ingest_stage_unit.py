"""IngestStage in-process on local stores (no broker): indexing, checks, idempotency."""

from __future__ import annotations

import json
from pathlib import Path

from covidct_core.messages import MANIFEST, SERIES_CHECK, SERIES_READY, Message, envelope
from covidct_core.stage import Outbound, run_stage
from covidct_core.storage import LocalStore
from covidct_ingest.claims import claim_job
from covidct_ingest.convert import read_instance_header
from covidct_ingest.grouping import compute_job_id, series_key_of
from covidct_ingest.stage import IngestStage
from covidct_ingest.triggers import object_event
from tests.samples import small_tcia_series, tcia_series


def stores(tmp_path: Path) -> tuple[LocalStore, LocalStore, IngestStage]:
    inbox = LocalStore(tmp_path / "in", bucket="input")
    work = LocalStore(tmp_path / "work", bucket="work")
    by_bucket = {"input": inbox, "work": work}
    return inbox, work, IngestStage(work, by_bucket.__getitem__, quiet_period=7.0)


def announce(
    stage: IngestStage, work: LocalStore, keys: list[str], inbox: LocalStore
) -> list[Outbound]:
    outbound: list[Outbound] = []
    for key in keys:
        info = inbox.head(key)
        assert info is not None
        event = object_event([{"bucket": "input", "key": key, "size": info.size}], "test")
        outbound += run_stage(stage, event, work).outbound
    return outbound


def test_series_is_assembled_only_by_its_latest_check_and_only_once(
    tmp_path: Path, samples_dir: Path
) -> None:
    inbox, work, stage = stores(tmp_path)
    files = sorted(small_tcia_series(samples_dir).glob("*.dcm"))
    keys = []
    for i, path in enumerate(files):
        keys.append(f"drop/{i:03d}")
        inbox.put_bytes(keys[-1], path.read_bytes())
    checks = announce(stage, work, keys, inbox)
    assert len(checks) == len(files)
    assert all(c.routing_key == "ingest.assemble" and c.delay_seconds == 7.0 for c in checks)
    assert all(c.message["schema"] == SERIES_CHECK for c in checks)
    # every check but the last is superseded by a newer instance
    early: list[Message] = []
    for check in checks[:-1]:
        early += [o.message for o in run_stage(stage, check.message, work).outbound]
    assert early == []
    ready = run_stage(stage, checks[-1].message, work).outbound
    assert [o.routing_key for o in ready] == ["segment.request"]
    assert ready[0].message["schema"] == SERIES_READY
    # the same check again (a redelivery) re-publishes the very same message
    again = run_stage(stage, checks[-1].message, work).outbound
    assert again[0].message["message_id"] == ready[0].message["message_id"]
    # the same objects announced again index nothing new and schedule no check
    assert announce(stage, work, keys[:3], inbox) == checks[:3]
    volumes = {info.key.split("/")[1] for info in work.list("volumes/")}
    assert volumes == {ready[0].message["job_id"]}


def test_one_more_slice_makes_a_new_job(tmp_path: Path, samples_dir: Path) -> None:
    inbox, work, stage = stores(tmp_path)
    import pydicom

    def z(path: Path) -> float:
        return float(pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient[2])

    files = sorted(small_tcia_series(samples_dir).glob("*.dcm"), key=z)  # the edge slice last
    for i, path in enumerate(files[:-1]):
        inbox.put_bytes(f"a/{i}", path.read_bytes())
    checks = announce(stage, work, [f"a/{i}" for i in range(len(files) - 1)], inbox)
    first = run_stage(stage, checks[-1].message, work)
    assert [o.routing_key for o in first.outbound] == ["segment.request"]
    inbox.put_bytes("a/late", files[-1].read_bytes())
    late = announce(stage, work, ["a/late"], inbox)
    second = run_stage(stage, late[-1].message, work).outbound
    assert second and second[0].routing_key == "segment.request"
    assert first.outbound[0].message["job_id"] != second[0].message["job_id"]
    assert len({info.key.split("/")[1] for info in work.list("volumes/")}) == 2


def manifest_for(inbox: LocalStore, files: list[Path], prefix: str) -> Message:
    keys, sizes = [], []
    for i, path in enumerate(files):
        info = inbox.put_bytes(f"{prefix}/{i:03d}-{path.name}", path.read_bytes())
        keys.append(info.key)
        sizes.append(info.size)
    return envelope(
        MANIFEST, bucket="input", prefix=prefix, keys=keys, sizes=sizes, correlation_id="c1"
    )


def test_a_manifest_of_one_series_is_assembled_in_its_own_handler(
    tmp_path: Path, samples_dir: Path
) -> None:
    """One handler: each object read once, no index, no series check; junk is recorded as
    unusable; the job and volume equal what the event path makes of the same files; a
    redelivery, or the event path later, re-publishes the same series-ready."""
    inbox, work, stage = stores(tmp_path)
    files = sorted(small_tcia_series(samples_dir).glob("*.dcm"))
    junk = tmp_path / "README.txt"
    junk.write_text("not DICOM")
    manifest = manifest_for(inbox, [*files, junk], "submit")
    reads: list[str] = []
    original = inbox.get_bytes
    inbox.get_bytes = lambda key: reads.append(key) or original(key)  # type: ignore[method-assign]
    run = run_stage(stage, manifest, work)
    [ready] = run.outbound
    assert ready.routing_key == "segment.request" and ready.message["schema"] == SERIES_READY
    assert ready.message["correlation_id"] == "c1"
    assert sorted(reads) == sorted(manifest["keys"])  # every object once, whole
    assert list(work.list("index/")) == []
    [error] = list(work.list("errors/"))
    assert json.loads(work.get_bytes(error.key))["code"] == "NOT_DICOM"
    # the event path on the same instances (another work bucket): the same job and volume
    inbox2, work2, stage2 = stores(tmp_path / "events")
    keys = []
    for i, path in enumerate(files):
        keys.append(inbox2.put_bytes(f"drop/{i:03d}", path.read_bytes()).key)
    checks = announce(stage2, work2, keys, inbox2)
    [via_events] = run_stage(stage2, checks[-1].message, work2).outbound
    assert via_events.message["job_id"] == ready.message["job_id"]
    assert via_events.message["volume"]["sha256"] == ready.message["volume"]["sha256"]
    # redelivered: the same message again; the event path afterwards: the same message
    again = run_stage(stage, manifest, work).outbound
    assert again[0].message["message_id"] == ready.message["message_id"]
    dicom_keys = [key for key in manifest["keys"] if not key.endswith("README.txt")]
    late_checks = announce(stage, work, dicom_keys, inbox)
    republished = run_stage(stage, late_checks[-1].message, work).outbound
    assert republished[0].message["message_id"] == ready.message["message_id"]


def test_manifests_that_need_the_general_path_are_indexed(
    tmp_path: Path, samples_dir: Path
) -> None:
    """Two series, or more bytes than the direct limit: indexed, then checked at once."""
    inbox, work, stage = stores(tmp_path)
    two = [sorted(folder.glob("*.dcm"))[:3] for folder in tcia_series(samples_dir)[:2]]
    mixed = manifest_for(inbox, two[0] + two[1], "mixed")
    checks = run_stage(stage, mixed, work).outbound
    assert [c.routing_key for c in checks] == ["ingest.assemble"] * 2
    assert all(c.message["force"] and c.delay_seconds == 0.0 for c in checks)
    assert len(list(work.list("index/"))) == 6
    stage.direct_max_bytes = 1000
    files = sorted(small_tcia_series(samples_dir).glob("*.dcm"))
    large = manifest_for(inbox, files, "large")
    [check] = run_stage(stage, large, work).outbound
    assert check.routing_key == "ingest.assemble"
    [ready] = run_stage(stage, check.message, work).outbound
    assert ready.routing_key == "segment.request"


def test_a_manifest_job_claimed_by_another_handler_goes_the_general_way(
    tmp_path: Path, samples_dir: Path
) -> None:
    """Claimed by another handler (perhaps this very manifest's first delivery, whose replica
    died within the lease): the manifest is indexed and its series check defers until the
    claim is finished or abandoned, so the job is never dropped."""
    inbox, work, stage = stores(tmp_path)
    files = sorted(small_tcia_series(samples_dir).glob("*.dcm"))
    manifest = manifest_for(inbox, files, "submit")
    headers = [read_instance_header(path.read_bytes()) for path in files]
    job_id = compute_job_id(series_key_of(headers[0])[0], [h.sop_instance_uid for h in headers])
    claim = claim_job(work, job_id, manifest["message_id"], 60.0)
    assert claim is not None
    [check] = stage.handle(manifest)
    assert check.routing_key == "ingest.assemble" and check.message["force"]
    assert list(work.list("volumes/")) == []
    [deferred] = stage.handle(check.message)
    assert deferred.message["attempt"] == 1 and deferred.delay_seconds > 0
    work.delete(claim)  # the claim is given up (or its lease runs out)
    [ready] = stage.handle(deferred.message)
    assert ready.routing_key == "segment.request" and ready.message["job_id"] == job_id
