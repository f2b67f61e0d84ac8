"""The ingest worker against the real RabbitMQ and SeaweedFS: triggers, assembly, idempotency."""

from __future__ import annotations

import json
import random
import threading
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import pytest

from covidct_core.broker import ConfirmedPublisher, publish_confirmed
from covidct_core.messages import SERIES_READY, validate_message
from covidct_core.metrics import create_metrics
from covidct_core.s3 import S3Store
from covidct_core.storage import ObjectStore
from covidct_core.topology import minio_events_queue
from covidct_core.volume_io import read_mha_bytes
from covidct_core.worker import Worker, WorkerOptions
from covidct_ingest.stage import IngestStage
from covidct_ingest.triggers import BucketPoller, decode_minio_event
from tests.helpers import channel_for, get_messages, wait_for
from tests.samples import small_tcia_series

pytestmark = pytest.mark.integration
RETRIES = (0.5,)


def upload_series(store: ObjectStore, folder: Path, prefix: str, seed: int = 0) -> list[str]:
    """Upload with random names, no extension, spread over nested prefixes."""
    rng = random.Random(seed)
    keys = []
    files = sorted(folder.glob("*.dcm"))
    rng.shuffle(files)
    for i, path in enumerate(files):
        key = f"{prefix}/part{i % 3}/deeper/{uuid.UUID(int=rng.getrandbits(128)).hex}"
        store.put_bytes(key, path.read_bytes())
        keys.append(key)
    return keys


def start_worker(
    amqp_url: str, exchange: str, stage: IngestStage, work: S3Store, minio_exchange: str = ""
) -> tuple[Worker, threading.Thread]:
    extra: dict[str, Any] = {}
    setup = None
    if minio_exchange:
        queue = minio_events_queue(exchange)

        def setup(channel: Any) -> None:
            channel.exchange_declare(minio_exchange, "fanout", durable=True)
            channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
            channel.queue_bind(queue, minio_exchange)

        extra[queue] = decode_minio_event
    options = WorkerOptions(amqp_url, exchange, 1, RETRIES, extra_queues=extra, setup=setup)
    worker = Worker(stage, work, create_metrics(), options)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    assert worker.connected.wait(10)
    return worker, thread


def stop_worker(worker: Worker, thread: threading.Thread) -> None:
    worker.request_stop()
    thread.join(30)


def make_stage(work: S3Store, s3_client: Any, quiet: float) -> IngestStage:
    return IngestStage(work, lambda bucket: S3Store(s3_client, bucket), quiet_period=quiet)


def test_polled_series_becomes_one_volume_and_a_second_drop_makes_no_new_job(
    amqp_url: str,
    exchange: str,
    samples_dir: Path,
    s3_client: Any,
    s3_store: S3Store,
    input_store: S3Store,
) -> None:
    series = small_tcia_series(samples_dir)
    upload_series(input_store, series, "drop-1")
    input_store.put_bytes("drop-1/notes.txt", b"not a dicom file")
    input_store.put_bytes("drop-1/empty", b"")
    worker, thread = start_worker(
        amqp_url, exchange, make_stage(s3_store, s3_client, 1.0), s3_store
    )
    publisher = ConfirmedPublisher(amqp_url, exchange)
    poller = BucketPoller(input_store, s3_store, lambda m: publisher.publish("ingest.object", m))
    try:
        assert poller.poll_once() == 32
        assert poller.poll_once() == 0, "a second poll announces nothing new"
        got = get_messages(amqp_url, f"{exchange}.segment", 1, timeout=60)
        assert len(got) == 1
        message = validate_message(got[0][1], SERIES_READY)
        volume = read_mha_bytes(s3_store.get_bytes(message["volume"]["key"]))
        assert volume.array.shape == (30, 512, 512)
        assert volume.array.dtype.name == "int16"
        series_json = json.loads(s3_store.get_bytes(message["series_metadata"]["key"]))
        assert series_json["job_id"] == message["job_id"]
        assert len(list(s3_store.list("errors/object-"))) == 2  # the junk, recorded

        # the same files again, under other names: same instances, so no second job
        upload_series(input_store, series, "drop-2", seed=1)
        assert poller.poll_once() == 30
        later = get_messages(amqp_url, f"{exchange}.segment", 1, timeout=8)
        assert all(m[1]["job_id"] == message["job_id"] for m in later)
        jobs = {info.key.split("/")[1] for info in s3_store.list("volumes/")}
        assert jobs == {message["job_id"]}
    finally:
        publisher.close()
        stop_worker(worker, thread)


def minio_event(bucket: str, key: str, size: int) -> bytes:
    """A notification exactly as MinIO publishes it over AMQP."""
    record = {
        "eventVersion": "2.0",
        "eventSource": "minio:s3",
        "awsRegion": "",
        "eventTime": "2026-12-04T10:00:00.000Z",
        "eventName": "s3:ObjectCreated:Put",
        "userIdentity": {"principalId": "minioadmin"},
        "requestParameters": {"sourceIPAddress": "10.0.0.1"},
        "responseElements": {"x-amz-request-id": "17A", "x-minio-origin-endpoint": "http://m"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "Config",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "minioadmin"}},
            "object": {
                "key": urllib.parse.quote_plus(key, safe=""),  # Go url.QueryEscape
                "size": size,
                "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                "contentType": "application/octet-stream",
                "sequencer": "17A0",
            },
        },
        "source": {"host": "10.0.0.1", "port": "", "userAgent": "MinIO (linux; amd64)"},
    }
    return json.dumps(
        {"EventName": "s3:ObjectCreated:Put", "Key": f"{bucket}/{key}", "Records": [record]}
    ).encode()


def test_minio_notifications_trigger_assembly(
    amqp_url: str,
    exchange: str,
    samples_dir: Path,
    s3_client: Any,
    s3_store: S3Store,
    input_store: S3Store,
) -> None:
    series = small_tcia_series(samples_dir)
    keys = upload_series(input_store, series, "minio")
    minio_exchange = f"{exchange}-minio"
    stage = make_stage(s3_store, s3_client, 1.0)
    worker, thread = start_worker(amqp_url, exchange, stage, s3_store, minio_exchange)
    connection, channel = channel_for(amqp_url)
    try:
        removal = json.loads(minio_event(input_store.bucket, keys[0], 1))
        removal["Records"][0]["eventName"] = "s3:ObjectRemoved:Delete"
        publish_confirmed(channel, minio_exchange, "", json.dumps(removal).encode())
        for key in keys:
            size = input_store.head(key).size  # type: ignore[union-attr]
            publish_confirmed(
                channel, minio_exchange, "", minio_event(input_store.bucket, key, size)
            )
        got = get_messages(amqp_url, f"{exchange}.segment", 1, timeout=60)
        assert len(got) == 1
        assert got[0][1]["series_instance_uid"]
        assert wait_for(
            lambda: (
                worker.metrics.messages.labels(stage="ingest", outcome="parked")._value.get() == 0
            )
        )
    finally:
        connection.close()
        channel_cleanup = channel_for(amqp_url)
        channel_cleanup[1].queue_delete(minio_events_queue(exchange))
        channel_cleanup[1].exchange_delete(minio_exchange)
        channel_cleanup[0].close()
        stop_worker(worker, thread)


def test_submit_uploads_and_the_manifest_skips_the_quiet_period(
    amqp_url: str,
    exchange: str,
    samples_dir: Path,
    s3_client: Any,
    s3_store: S3Store,
    input_store: S3Store,
    tmp_path: Path,
) -> None:
    import shutil

    from covidct.submit import submit

    folder = tmp_path / "upload"
    shutil.copytree(small_tcia_series(samples_dir), folder / "series")
    (folder / "README.txt").write_text("not DICOM")
    stage = make_stage(s3_store, s3_client, quiet=600.0)  # a quiet wait would time out
    worker, thread = start_worker(amqp_url, exchange, stage, s3_store)
    publisher = ConfirmedPublisher(amqp_url, exchange)
    try:
        manifest = submit(folder, input_store, publisher.publish, progress=False)
        assert len(manifest["keys"]) == 31
        got = get_messages(amqp_url, f"{exchange}.segment", 1, timeout=60)
        assert len(got) == 1
        assert got[0][1]["correlation_id"] == manifest["correlation_id"]
    finally:
        publisher.close()
        stop_worker(worker, thread)
