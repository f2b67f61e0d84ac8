"""``covidct-ingest``: the ingest worker process (thin shell)."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from covidct_core.broker import ConfirmedPublisher
from covidct_core.config import env_field, read_settings
from covidct_core.entrypoint import BuiltStage, WorkerContext, exit_with, serve_stage
from covidct_core.errors import ConfigError
from covidct_core.s3 import MAX_POOL_CONNECTIONS, S3Store
from covidct_core.topology import minio_events_queue
from covidct_core.worker import Worker
from covidct_ingest.config import load_config
from covidct_ingest.stage import IngestStage
from covidct_ingest.triggers import BucketPoller, decode_minio_event

TRIGGERS = ("amqp", "poll", "both")


@dataclass(frozen=True)
class IngestSettings:
    trigger: str = env_field("COVIDCT_INGEST_TRIGGER", "amqp", help="amqp | poll | both")
    minio_exchange: str = env_field("COVIDCT_MINIO_EVENTS_EXCHANGE", "minio-events")
    poll_interval: float = env_field("COVIDCT_POLL_INTERVAL", 5.0)
    quiet_period: float = env_field("COVIDCT_QUIET_PERIOD", 10.0)
    selection_rules: str = env_field("COVIDCT_SELECTION_RULES", "")
    io_threads: int = env_field(
        "COVIDCT_INGEST_IO_THREADS", 16, help="concurrent object-store requests per message"
    )


def read_ingest_settings(environ: Mapping[str, str]) -> IngestSettings:
    settings = read_settings(IngestSettings, environ)
    problems = []
    if settings.trigger not in TRIGGERS:
        problems.append(f"COVIDCT_INGEST_TRIGGER must be one of {', '.join(TRIGGERS)}")
    if not 1 <= settings.io_threads <= MAX_POOL_CONNECTIONS:
        problems.append(f"COVIDCT_INGEST_IO_THREADS must be 1..{MAX_POOL_CONNECTIONS}")
    if problems:
        raise ConfigError(problems)
    return settings


def build(context: WorkerContext) -> BuiltStage:
    settings = read_ingest_settings(context.environ)
    config = load_config(settings.selection_rules or None)
    stores: dict[str, S3Store] = {}

    def store_for_bucket(bucket: str) -> Any:
        if bucket == context.store.bucket:
            return context.store
        if bucket not in stores:
            stores[bucket] = S3Store(context.s3_client, bucket)
        return stores[bucket]

    stage = IngestStage(
        context.store,
        store_for_bucket,
        config,
        settings.quiet_period,
        io_threads=settings.io_threads,
    )
    exchange = context.settings.broker.exchange
    minio_queue = minio_events_queue(exchange)
    built = BuiltStage(stage)
    if settings.trigger in ("amqp", "both"):

        def declare_minio(channel: Any) -> None:
            channel.exchange_declare(settings.minio_exchange, "fanout", durable=True)
            channel.queue_declare(minio_queue, durable=True, arguments={"x-queue-type": "quorum"})
            channel.queue_bind(minio_queue, settings.minio_exchange)

        built.extra_queues[minio_queue] = decode_minio_event
        built.setup = declare_minio
    if settings.trigger in ("poll", "both"):
        input_bucket = context.settings.storage.input_bucket
        input_store = S3Store(context.s3_client, input_bucket)
        input_store.ensure_bucket()

        def start_poller(worker: Worker) -> None:
            publisher = ConfirmedPublisher(context.settings.broker.amqp_url, exchange)
            poller = BucketPoller(
                input_store, context.store, lambda m: publisher.publish("ingest.object", m)
            )
            thread = threading.Thread(
                target=poller.run, args=(worker.stop_event, settings.poll_interval), daemon=True
            )
            thread.start()

        built.background.append(start_poller)
    return built


def main() -> None:
    exit_with(serve_stage("ingest", build, os.environ))
