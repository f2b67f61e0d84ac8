"""The worker shell against the real RabbitMQ and SeaweedFS."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from covidct_core.broker import publish_confirmed, publish_message
from covidct_core.errors import UnroutableMessageError
from covidct_core.messages import MASK_READY, SERIES_READY, parse_message
from covidct_core.metrics import create_metrics
from covidct_core.s3 import S3Store
from covidct_core.topology import (
    StageQueues,
    declare_topology,
    failed_queue,
)
from covidct_core.worker import Worker, WorkerOptions
from tests.conftest import REPO_ROOT
from tests.core.echo_stage import EchoStage
from tests.core.test_stage_unit import make_series_ready
from tests.helpers import channel_for, get_messages, queue_depth, wait_for

pytestmark = pytest.mark.integration
FAST_RETRIES = (0.2, 0.4)


def declare(amqp_url: str, exchange: str, delays: tuple[float, ...] = FAST_RETRIES) -> None:
    connection, channel = channel_for(amqp_url)
    declare_topology(channel, exchange, delays)
    connection.close()


def publish(amqp_url: str, exchange: str, routing_key: str, message: Any) -> None:
    connection, channel = channel_for(amqp_url)
    if isinstance(message, bytes):
        publish_confirmed(channel, exchange, routing_key, message)
    else:
        publish_message(channel, exchange, routing_key, message)
    connection.close()


@pytest.fixture
def running_worker(amqp_url: str, exchange: str, s3_store: S3Store) -> Iterator[Worker]:
    declare(amqp_url, exchange)
    metrics = create_metrics()
    options = WorkerOptions(amqp_url, exchange, prefetch=1, retry_delays=FAST_RETRIES)
    worker = Worker(EchoStage(s3_store), s3_store, metrics, options)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    assert worker.connected.wait(10)
    yield worker
    worker.request_stop()
    thread.join(15)
    assert not thread.is_alive()


def test_publish_consume_round_trip_with_confirms(amqp_url: str, exchange: str) -> None:
    declare(amqp_url, exchange)
    message = make_series_ready()
    publish(amqp_url, exchange, "segment.request", message)
    got = get_messages(amqp_url, f"{exchange}.segment", 1, timeout=5)
    assert len(got) == 1
    properties, body = got[0]
    assert body == message
    assert properties.delivery_mode == 2
    assert properties.message_id == message["message_id"]


def test_unroutable_publish_raises(amqp_url: str, exchange: str) -> None:
    declare(amqp_url, exchange)
    connection, channel = channel_for(amqp_url)
    with pytest.raises(UnroutableMessageError):
        publish_confirmed(channel, exchange, "nobody.listens", b"{}")
    connection.close()


def test_worker_handles_a_message_and_publishes_the_next_one(
    amqp_url: str, exchange: str, running_worker: Worker, s3_store: S3Store
) -> None:
    message = make_series_ready(job_id="aaaabbbbccccdddd")
    publish(amqp_url, exchange, "segment.request", message)
    got = get_messages(amqp_url, f"{exchange}.classify", 1)
    assert len(got) == 1
    parse_message(__import__("json").dumps(got[0][1]).encode(), MASK_READY)
    assert got[0][1]["job_id"] == "aaaabbbbccccdddd"
    assert s3_store.get_bytes("out/aaaabbbbccccdddd.txt") == b"aaaabbbbccccdddd"
    counter = running_worker.metrics.messages.labels(stage="segment", outcome="ok")
    assert wait_for(lambda: counter._value.get() == 1)


def test_retryable_failure_goes_through_retry_queues_then_parks(
    amqp_url: str, exchange: str, running_worker: Worker, s3_store: S3Store
) -> None:
    message = make_series_ready("retry", job_id="1111222233334444")
    publish(amqp_url, exchange, "segment.request", message)
    parked = get_messages(amqp_url, f"{exchange}.segment.parked", 1, timeout=20)
    assert len(parked) == 1
    properties, body = parked[0]
    assert body == message
    headers = properties.headers
    assert headers["x-parked-code"] == "RETRIES_EXHAUSTED"
    assert "storage hiccup" in headers["x-parked-reason"]
    deaths = {d["queue"]: d["count"] for d in headers["x-death"] if d["reason"] == "expired"}
    queues = StageQueues("segment", exchange, FAST_RETRIES)
    assert deaths == {queues.retry(0): 1, queues.retry(1): 1}
    # one first attempt plus one per retry
    assert len(list(s3_store.list("calls/1111222233334444/"))) == 3
    failed = get_messages(amqp_url, failed_queue(exchange), 1)
    assert failed[0][1]["code"] == "RETRIES_EXHAUSTED"
    assert queue_depth(amqp_url, f"{exchange}.classify") == 0


def test_permanent_error_writes_error_object_parks_and_publishes_job_failed(
    amqp_url: str, exchange: str, running_worker: Worker, s3_store: S3Store
) -> None:
    message = make_series_ready("permanent", job_id="5555666677778888")
    publish(amqp_url, exchange, "segment.request", message)
    parked = get_messages(amqp_url, f"{exchange}.segment.parked", 1)
    assert parked[0][0].headers["x-parked-code"] == "NO_LUNG_FOUND"
    failed = get_messages(amqp_url, failed_queue(exchange), 1)
    assert failed[0][1]["code"] == "NO_LUNG_FOUND"
    assert failed[0][1]["error"]["key"] == "errors/5555666677778888.json"
    record = __import__("json").loads(s3_store.get_bytes("errors/5555666677778888.json"))
    assert record["code"] == "NO_LUNG_FOUND"
    assert record["stage"] == "segment"
    assert record["inputs"] == ["v.mha"]
    assert len(list(s3_store.list("calls/5555666677778888/"))) == 1


def test_malformed_message_is_parked_and_the_worker_keeps_consuming(
    amqp_url: str, exchange: str, running_worker: Worker
) -> None:
    publish(amqp_url, exchange, "segment.request", b"{this is not json")
    parked = get_messages(amqp_url, f"{exchange}.segment.parked", 1)
    assert parked[0][0].headers["x-parked-code"] == "INVALID_MESSAGE"
    assert "not JSON" in parked[0][0].headers["x-parked-reason"]
    publish(amqp_url, exchange, "segment.request", make_series_ready(job_id="9999000011112222"))
    got = get_messages(amqp_url, f"{exchange}.classify", 1)
    assert got[0][1]["job_id"] == "9999000011112222"


def worker_process(
    amqp_url: str, exchange: str, s3: dict[str, str], bucket: str, slow: float
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "COVIDCT_AMQP_URL": amqp_url,
        "COVIDCT_EXCHANGE": exchange,
        "COVIDCT_RETRY_DELAYS": ",".join(str(d) for d in FAST_RETRIES),
        "COVIDCT_S3_ENDPOINT": s3["endpoint"],
        "COVIDCT_S3_ACCESS_KEY": s3["access_key"],
        "COVIDCT_S3_SECRET_KEY": s3["secret_key"],
        "COVIDCT_WORK_BUCKET": bucket,
        "ECHO_SLOW_SECONDS": str(slow),
        "COVIDCT_METRICS_PORT": "0",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.core.echo_stage"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_sigkill_mid_handler_redelivers_and_publishes_exactly_once(
    amqp_url: str,
    exchange: str,
    s3_settings: dict[str, str],
    s3_bucket: str,
    s3_store: S3Store,
) -> None:
    declare(amqp_url, exchange)
    job = "abcdabcdabcdabcd"
    first = worker_process(amqp_url, exchange, s3_settings, s3_bucket, slow=30)
    try:
        publish(amqp_url, exchange, "segment.request", make_series_ready("slow", job_id=job))
        assert wait_for(lambda: any(True for _ in s3_store.list(f"calls/{job}/")), 30)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
    assert s3_store.head(f"out/{job}.txt") is None
    second = worker_process(amqp_url, exchange, s3_settings, s3_bucket, slow=0.1)
    try:
        got = get_messages(amqp_url, f"{exchange}.classify", 1, timeout=30)
        assert len(got) == 1 and got[0][1]["job_id"] == job
        # give a duplicate a chance to show up
        assert not get_messages(amqp_url, f"{exchange}.classify", 1, timeout=2)
    finally:
        second.terminate()
        second.wait(20)
    assert len(list(s3_store.list(f"finished/{job}/"))) == 1
    assert s3_store.get_bytes(f"out/{job}.txt") == job.encode()
    assert queue_depth(amqp_url, f"{exchange}.segment") == 0


def test_sigterm_finishes_the_current_job_acks_and_exits_zero(
    amqp_url: str,
    exchange: str,
    s3_settings: dict[str, str],
    s3_bucket: str,
    s3_store: S3Store,
) -> None:
    declare(amqp_url, exchange)
    job = "feedfeedfeedfeed"
    process = worker_process(amqp_url, exchange, s3_settings, s3_bucket, slow=3)
    try:
        publish(amqp_url, exchange, "segment.request", make_series_ready("slow", job_id=job))
        assert wait_for(lambda: any(True for _ in s3_store.list(f"calls/{job}/")), 30)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        process.kill()
    assert s3_store.get_bytes(f"out/{job}.txt") == job.encode()
    got = get_messages(amqp_url, f"{exchange}.classify", 1, timeout=5)
    assert len(got) == 1
    assert queue_depth(amqp_url, f"{exchange}.segment") == 0


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


def test_worker_reconnects_after_a_broker_restart(
    amqp_url: str, exchange: str, running_worker: Worker
) -> None:
    if not amqp_url.startswith("amqp://guest:guest@127.0.0.1"):
        pytest.skip("restarting RabbitMQ needs the local broker")
    rabbitmqctl("stop_app")
    try:
        assert wait_for(lambda: not running_worker.connected.is_set(), 20)
    finally:
        rabbitmqctl("start_app")
        rabbitmqctl("await_startup")
    assert running_worker.connected.wait(60), "worker did not reconnect"
    publish(amqp_url, exchange, "segment.request", make_series_ready(job_id="0a0a0a0a0b0b0b0b"))
    got = get_messages(amqp_url, f"{exchange}.classify", 1, timeout=30)
    assert got and got[0][1]["job_id"] == "0a0a0a0a0b0b0b0b"
    assert SERIES_READY
