"""Small helpers for integration tests against the real broker."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pika

# the retry delays of worker processes started by tests (the exchange fixture deletes them)
WORKER_RETRY_DELAYS = (1.0, 2.0)


def channel_for(amqp_url: str) -> tuple[pika.BlockingConnection, Any]:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.confirm_delivery()
    return connection, channel


def get_messages(
    amqp_url: str, queue: str, expected: int, timeout: float = 20.0
) -> list[tuple[Any, dict[str, Any]]]:
    """Take up to ``expected`` messages from ``queue`` (acking them), waiting up to timeout."""
    connection, channel = channel_for(amqp_url)
    found: list[tuple[Any, dict[str, Any]]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < expected and time.monotonic() < deadline:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                connection.sleep(0.1)
                continue
            try:
                found.append((properties, json.loads(body)))
            except ValueError:
                found.append((properties, {"raw": body}))
    finally:
        connection.close()
    return found


def queue_depth(amqp_url: str, queue: str) -> int:
    connection, channel = channel_for(amqp_url)
    try:
        return int(channel.queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


def wait_for(condition: Callable[[], bool], timeout: float = 20.0, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def worker_env(
    amqp_url: str, exchange: str, s3: dict[str, str], work_bucket: str, input_bucket: str
) -> dict[str, str]:
    """The environment of a worker process pointed at a test exchange and test buckets,
    polling the input bucket with short delays."""
    import os

    return {
        **os.environ,
        "COVIDCT_AMQP_URL": amqp_url,
        "COVIDCT_EXCHANGE": exchange,
        "COVIDCT_RETRY_DELAYS": ",".join(str(d) for d in WORKER_RETRY_DELAYS),
        "COVIDCT_S3_ENDPOINT": s3["endpoint"],
        "COVIDCT_S3_ACCESS_KEY": s3["access_key"],
        "COVIDCT_S3_SECRET_KEY": s3["secret_key"],
        "COVIDCT_WORK_BUCKET": work_bucket,
        "COVIDCT_INPUT_BUCKET": input_bucket,
        "COVIDCT_INGEST_TRIGGER": "poll",
        "COVIDCT_POLL_INTERVAL": "1",
        "COVIDCT_QUIET_PERIOD": "2",
    }
