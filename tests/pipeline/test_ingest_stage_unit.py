"""IngestStage in-process on local stores (no broker): indexing, checks, idempotency."""

from __future__ import annotations

from pathlib import Path

from covidct_core.messages import SERIES_CHECK, SERIES_READY, Message
from covidct_core.stage import Outbound, run_stage
from covidct_core.storage import LocalStore
from covidct_ingest.stage import IngestStage
from covidct_ingest.triggers import object_event
from tests.samples import small_tcia_series


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
