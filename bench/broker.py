"""Broker throughput: our layer vs raw pika with the same settings, in the same run.

Both sides publish N persistent messages with publisher confirms and mandatory routing,
then consume them with manual acks and prefetch 1. Ours goes through publish_confirmed,
the Worker (schema validation, worker thread, add_callback_threadsafe ack); the baseline
is a bare pika publish loop and a bare basic_consume/ack loop.

Prints ``broker_throughput_ratio: X`` (ours msgs/s / raw msgs/s). Target >= 0.90.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
import uuid

import pika

from covidct_core.broker import publish_message
from covidct_core.messages import (
    SERIES_READY,
    JobIdentity,
    Message,
    ObjectRef,
    encode_message,
    series_ready,
)
from covidct_core.metrics import create_metrics
from covidct_core.stage import Outbound
from covidct_core.storage import LocalStore
from covidct_core.topology import declare_topology, delete_topology
from covidct_core.worker import Worker, WorkerOptions

DELAYS = (10.0,)


class CountingStage:
    name = "segment"
    accepts = (SERIES_READY,)

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.done = threading.Event()

    def completion_key(self, message: Message) -> None:
        return None

    def handle(self, message: Message) -> list[Outbound]:
        self.count += 1
        if self.count >= self.expected:
            self.done.set()
        return []


def sample_message(i: int) -> Message:
    ident = JobIdentity(f"{i:016x}", "1.2", "1.2.3", "c", "2026-01-01T00:00:00Z", "")
    ref = ObjectRef("b", "volumes/x/image.mha", 1, "0" * 64)
    return series_ready(ident, ref, ref, {})


def run_ours(url: str, n: int, store: LocalStore) -> float:
    exchange = f"bench-{uuid.uuid4().hex[:8]}"
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    declare_topology(channel, exchange, DELAYS)
    messages = [sample_message(i) for i in range(n)]
    stage = CountingStage(n)
    worker = Worker(stage, store, create_metrics(), WorkerOptions(url, exchange, 1, DELAYS))
    start = time.perf_counter()
    for message in messages:
        publish_message(channel, exchange, "segment.request", message)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    stage.done.wait(300)
    elapsed = time.perf_counter() - start
    worker.request_stop()
    thread.join(30)
    delete_topology(channel, exchange, DELAYS)
    connection.close()
    return n / elapsed


def run_raw(url: str, n: int) -> float:
    exchange = f"bench-{uuid.uuid4().hex[:8]}"
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    declare_topology(channel, exchange, DELAYS)
    bodies = [encode_message(sample_message(i)) for i in range(n)]
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    start = time.perf_counter()
    for body in bodies:
        channel.basic_publish(exchange, "segment.request", body, props, mandatory=True)
    consumer = pika.BlockingConnection(pika.URLParameters(url))
    cchannel = consumer.channel()
    cchannel.basic_qos(prefetch_count=1)
    received = 0

    def on_message(ch: object, method: object, properties: object, body: bytes) -> None:
        nonlocal received
        cchannel.basic_ack(method.delivery_tag)  # type: ignore[attr-defined]
        received += 1

    cchannel.basic_consume(f"{exchange}.segment", on_message)
    while received < n:
        consumer.process_data_events(time_limit=0.5)
    elapsed = time.perf_counter() - start
    consumer.close()
    delete_topology(channel, exchange, DELAYS)
    connection.close()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    url = os.environ.get("COVIDCT_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    store = LocalStore(__import__("pathlib").Path("/tmp/covidct-bench-store"))
    ours, raw = [], []
    for _ in range(args.rounds):  # interleaved, so drift hits both sides alike
        raw.append(run_raw(url, args.messages))
        ours.append(run_ours(url, args.messages, store))
    ours_rate, raw_rate = statistics.median(ours), statistics.median(raw)
    print(f"raw_pika_msgs_per_s: {raw_rate:.0f}")
    print(f"covidct_msgs_per_s: {ours_rate:.0f}")
    print(f"broker_throughput_ratio: {ours_rate / raw_rate:.3f}")


if __name__ == "__main__":
    main()
