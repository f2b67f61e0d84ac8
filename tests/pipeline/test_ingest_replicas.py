"""Two ingest replicas as separate processes: each distinct instance set is processed once.

Both replicas poll the same input bucket, so most objects are announced twice (the worst
case). The series-ready messages reaching ``<exchange>.segment``, the completion records,
the volumes and each process's own ``series_ready`` log events must all show one assembly
per job. One slice added later makes a new job and leaves the old volume untouched.
"""

from __future__ import annotations

import hashlib
import io
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import generate_uid

from covidct_core.messages import SERIES_READY, validate_message
from covidct_core.s3 import S3Store
from covidct_core.stage import Outbound, run_stage
from covidct_core.volume_io import read_mha_bytes
from covidct_ingest.index import IndexEntry, SourceObject, index_instance, read_header
from covidct_ingest.stage import IngestStage
from covidct_ingest.triggers import object_event
from tests.helpers import channel_for, queue_depth, worker_env
from tests.samples import small_tcia_series, tcia_series

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent
REPLICAS = 2
SETTLE_S = 6.0  # keep draining this long after the last message, for late duplicates


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture
def replicas(
    amqp_url: str,
    exchange: str,
    s3_settings: dict[str, str],
    s3_bucket: str,
    input_store: S3Store,
    tmp_path: Path,
) -> Iterator[list[Path]]:
    """Two ``covidct-ingest`` processes polling the same buckets; yields their log files."""
    env = worker_env(amqp_url, exchange, s3_settings, s3_bucket, input_store.bucket)
    processes: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    ports: list[int] = []
    handles = []
    for i in range(REPLICAS):
        logs.append(tmp_path / f"ingest-{i}.log")
        handles.append(logs[-1].open("wb"))
        ports.append(free_port())
        processes.append(
            subprocess.Popen(
                [str(BIN / "covidct-ingest")],
                env={**env, "COVIDCT_METRICS_PORT": str(ports[-1])},
                stdout=handles[-1],
                stderr=subprocess.STDOUT,
            )
        )
    try:
        deadline = time.monotonic() + 60
        while not all(ready(port) for port in ports):
            dead = [p.args for p in processes if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                pytest.fail(f"ingest replicas not ready (exited: {dead})\n{tails(logs)}")
            time.sleep(0.2)
        yield logs
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        for handle in handles:
            handle.close()


def tails(logs: list[Path]) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in logs)


def log_events(logs: list[Path], event: str) -> list[tuple[str, dict[str, Any]]]:
    """``(log file name, record)`` for every JSON log line of ``event`` in each process."""
    found = []
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("event") == event:
                found.append((path.name, record))
    return found


def drain(
    amqp_url: str, queue: str, enough: Callable[[list[dict[str, Any]]], bool], timeout: float
) -> list[dict[str, Any]]:
    """Take messages from ``queue`` until ``enough`` holds, then for SETTLE_S more seconds
    after the last one (late duplicates), within ``timeout`` overall."""
    connection, channel = channel_for(amqp_url)
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            method, _properties, body = channel.basic_get(queue, auto_ack=True)
            if method is not None:
                found.append(json.loads(body))
                last = time.monotonic()
                continue
            if enough(found) and time.monotonic() - last > SETTLE_S:
                break
            connection.sleep(0.1)
    finally:
        connection.close()
    return found


def upload_series(store: S3Store, folder: Path, prefix: str) -> None:
    for path in sorted(folder.glob("*.dcm")):
        store.put_bytes(f"{prefix}/{uuid.uuid4().hex}", path.read_bytes())


def extra_edge_slice(folder: Path) -> bytes:
    """A copy of the series' lowest slice moved one slice spacing further out, as a new
    instance (new SOPInstanceUID): the series grows by one slice at its edge."""
    slices = sorted(
        (pydicom.dcmread(path) for path in folder.glob("*.dcm")),
        key=lambda ds: float(ds.ImagePositionPatient[2]),
    )
    # axial series (orientation 1,0,0,0,1,0): the slice normal is z
    assert [float(v) for v in slices[0].ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    edge, neighbour = slices[0], slices[1]
    step = float(neighbour.ImagePositionPatient[2]) - float(edge.ImagePositionPatient[2])
    new_z = float(edge.ImagePositionPatient[2]) - step
    edge.ImagePositionPatient = [*edge.ImagePositionPatient[:2], new_z]
    if "SliceLocation" in edge:
        edge.SliceLocation = new_z
    edge.InstanceNumber = max(int(ds.InstanceNumber) for ds in slices) + 1
    edge.SOPInstanceUID = generate_uid()
    edge.file_meta.MediaStorageSOPInstanceUID = edge.SOPInstanceUID
    buffer = io.BytesIO()
    edge.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def by_job(messages: list[dict[str, Any]]) -> dict[str, Counter[str]]:
    """job id -> how many series-ready messages of each message id arrived."""
    jobs: dict[str, Counter[str]] = defaultdict(Counter)
    for message in messages:
        validate_message(message, SERIES_READY)
        jobs[message["job_id"]][message["message_id"]] += 1
    return dict(jobs)


def snapshot(store: S3Store, prefix: str) -> dict[str, str]:
    """sha256 of every object under ``prefix``, computed from its bytes."""
    return {
        info.key: hashlib.sha256(store.get_bytes(info.key)).hexdigest()
        for info in store.list(prefix)
    }


def assert_each_job_assembled_once(
    messages: list[dict[str, Any]], store: S3Store, logs: list[Path], jobs: set[str]
) -> None:
    """One series-ready message id per job; one completion record and one ``series_ready``
    log event (one assembling handler) per job; the volume the message names is the one
    stored."""
    per_job = by_job(messages)
    assert set(per_job) == jobs
    for job_id, ids in per_job.items():
        assert len(ids) == 1, f"different series-ready messages for job {job_id}: {ids}"
        copies = [m for m in messages if m["job_id"] == job_id]
        assert all(copy == copies[0] for copy in copies), "a re-published copy differs"
        record = json.loads(store.get_bytes(f"done/ingest/series/{job_id}/record.json"))
        assert [item["message"]["message_id"] for item in record] == list(ids)
    assembled = Counter(record["job_id"] for _name, record in log_events(logs, "series_ready"))
    assert assembled == Counter(dict.fromkeys(jobs, 1)), assembled
    for message in messages:
        volume = message["volume"]
        assert hashlib.sha256(store.get_bytes(volume["key"])).hexdigest() == volume["sha256"]


@pytest.mark.slow
def test_two_replicas_assemble_each_instance_set_once_and_a_later_slice_makes_a_new_job(
    amqp_url: str,
    exchange: str,
    samples_dir: Path,
    replicas: list[Path],
    input_store: S3Store,
    s3_store: S3Store,
) -> None:
    logs = replicas
    series = [p for p in tcia_series(samples_dir) if "A0002" in str(p)]
    assert len(series) == 2
    for i, folder in enumerate(series):
        upload_series(input_store, folder, f"drop/{i}")
    segment_queue = f"{exchange}.segment"
    first = drain(amqp_url, segment_queue, lambda got: len(by_job(got)) >= 2, timeout=60)
    jobs = set(by_job(first))
    assert len(jobs) == 2, f"{len(jobs)} jobs\n{tails(logs)}"
    announced = log_events(logs, "poll_announced")
    assert {name for name, _ in announced} == {p.name for p in logs}, "both replicas polled"
    assert_each_job_assembled_once(first, s3_store, logs, jobs)
    assert {info.key.split("/")[1] for info in s3_store.list("volumes/")} == jobs
    records = [
        i.key for i in s3_store.list("done/ingest/series/") if i.key.endswith("/record.json")
    ]
    assert len(records) == 2
    for job_id in jobs:
        shape = read_mha_bytes(s3_store.get_bytes(f"volumes/{job_id}/image.mha")).array.shape
        assert shape == (30, 512, 512)
    assert queue_depth(amqp_url, f"{exchange}.ingest") == 0
    assert queue_depth(amqp_url, f"{exchange}.ingest.parked") == 0
    before = snapshot(s3_store, "volumes/")
    records_before = snapshot(s3_store, "done/ingest/series/")  # incl. any claim objects

    # one slice more at the edge of the first series: a new instance set, so a new job
    grown = series[0]
    input_store.put_bytes(f"drop/late/{uuid.uuid4().hex}", extra_edge_slice(grown))
    second = drain(amqp_url, segment_queue, lambda got: len(got) >= 1, timeout=40)
    new_jobs = set(by_job(second))
    assert len(new_jobs) == 1 and not new_jobs & jobs, f"{new_jobs}\n{tails(logs)}"
    (new_job,) = new_jobs
    assert_each_job_assembled_once(first + second, s3_store, logs, jobs | new_jobs)
    new_volume = read_mha_bytes(s3_store.get_bytes(f"volumes/{new_job}/image.mha"))
    assert new_volume.array.shape == (31, 512, 512)
    old_uid = {m["job_id"]: m["series_instance_uid"] for m in first}
    assert second[0]["series_instance_uid"] in old_uid.values()
    after = snapshot(s3_store, "volumes/")
    assert {k: v for k, v in after.items() if k.split("/")[1] in jobs} == before
    records_after = snapshot(s3_store, "done/ingest/series/")
    assert {k: v for k, v in records_after.items() if k.split("/")[3] in jobs} == records_before


def test_concurrent_copies_of_one_check_assemble_once_on_the_real_store(
    samples_dir: Path, s3_client: Any, s3_store: S3Store, input_store: S3Store
) -> None:
    """Two replicas handling the same passing check at the same moment (the copies a
    duplicate announcement re-publishes): one assembles, the other defers; the deferred
    check then publishes nothing, a redelivery of the owner's check re-publishes its
    message."""
    stage = IngestStage(s3_store, lambda bucket: S3Store(s3_client, bucket), quiet_period=2.0)
    upload_series(input_store, small_tcia_series(samples_dir), "drop")
    checks = []
    for info in input_store.list("drop/"):
        item = {"bucket": input_store.bucket, "key": info.key, "size": info.size}
        checks += run_stage(stage, object_event([item], "test"), s3_store).outbound
    latest = max(checks, key=lambda c: str(c.message["generation"])).message
    start = threading.Barrier(REPLICAS)

    def replica(_: int) -> list[Outbound]:
        start.wait(10)
        return stage.handle(latest)

    with ThreadPoolExecutor(REPLICAS) as pool:
        results = list(pool.map(replica, range(REPLICAS)))
    kinds = sorted(tuple(o.routing_key for o in result) for result in results)
    assert kinds == [("ingest.assemble",), ("segment.request",)]
    ready = next(r[0] for r in results if r[0].routing_key == "segment.request").message
    deferred = next(r[0] for r in results if r[0].routing_key == "ingest.assemble")
    assert deferred.delay_seconds == 2.0
    assert deferred.message["attempt"] == 1
    assert deferred.message["message_id"] != latest["message_id"]
    assert {k: deferred.message[k] for k in ("series_key", "generation")} == {
        k: latest[k] for k in ("series_key", "generation")
    }
    job_id = ready["job_id"]
    assert [i.key for i in s3_store.list(f"done/ingest/series/{job_id}/")] == [
        f"done/ingest/series/{job_id}/claim-0.json",
        f"done/ingest/series/{job_id}/record.json",
    ]
    assert {info.key.split("/")[1] for info in s3_store.list("volumes/")} == {job_id}
    assert stage.handle(deferred.message) == []
    again = stage.handle(latest)
    assert [o.message for o in again] == [ready]


def test_concurrent_indexing_of_one_object_creates_one_entry(
    samples_dir: Path, s3_store: S3Store, input_store: S3Store
) -> None:
    path = sorted(small_tcia_series(samples_dir).glob("*.dcm"))[0]
    info = input_store.put_bytes("one", path.read_bytes())
    source = SourceObject(input_store.bucket, "one", info.size, info.etag or "")
    header = read_header(input_store, source)
    start = threading.Barrier(4)

    def replica(_: int) -> IndexEntry | None:
        start.wait(10)
        return index_instance(s3_store, header, source)

    with ThreadPoolExecutor(4) as pool:
        entries = list(pool.map(replica, range(4)))
    created = [e for e in entries if e is not None]
    assert len(created) == 1
    (stored,) = [IndexEntry.from_json(s3_store.get_bytes(i.key)) for i in s3_store.list("index/")]
    assert stored == created[0]


def test_s3_conditional_put_creates_only_once(s3_store: S3Store) -> None:
    first = s3_store.put_bytes_if_absent("claims/x.json", b"first")
    assert first is not None and first.sha256 == hashlib.sha256(b"first").hexdigest()
    assert s3_store.put_bytes_if_absent("claims/x.json", b"second") is None
    assert s3_store.get_bytes("claims/x.json") == b"first"
