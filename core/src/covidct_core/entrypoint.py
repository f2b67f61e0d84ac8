"""The thin shell every stage's ``main`` uses: config, logging, metrics, storage, worker.

A service's main reads its own settings and builds its stage in a ``build`` callback; this
module wires the rest. Nothing here runs at import time.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import structlog

from covidct_core.allocator import retain_freed_memory
from covidct_core.config import WorkerSettings, read_worker_settings
from covidct_core.errors import ConfigError, CovidCtError
from covidct_core.logs import configure_logging
from covidct_core.metered_store import MeteredStore
from covidct_core.metrics import HealthServer, StageMetrics, create_metrics
from covidct_core.s3 import S3Store, make_s3_client
from covidct_core.stage import Stage
from covidct_core.worker import Decoder, Worker, WorkerOptions


@dataclass(frozen=True)
class WorkerContext:
    """What a stage builder gets: settings, the metered work store and the metrics."""

    settings: WorkerSettings
    environ: Mapping[str, str]
    store: MeteredStore
    s3_client: Any
    metrics: StageMetrics


@dataclass
class BuiltStage:
    """What a stage builder returns."""

    stage: Stage
    readiness: dict[str, Callable[[], bool]] = field(default_factory=dict)
    extra_queues: dict[str, Decoder] = field(default_factory=dict)
    background: list[Callable[[Worker], None]] = field(default_factory=list)
    setup: Callable[[Any], None] | None = None


StageBuilder = Callable[[WorkerContext], BuiltStage]


def serve_stage(stage_name: str, build: StageBuilder, environ: Mapping[str, str]) -> int:
    """Run one stage worker until SIGTERM/SIGINT. Returns the process exit code."""
    try:
        settings = read_worker_settings(environ)
    except ConfigError as e:
        configure_logging("INFO")
        structlog.get_logger().error("config_invalid", stage=stage_name, problems=e.problems)
        return 2
    configure_logging(settings.process.log_level)
    log = structlog.get_logger().bind(stage=stage_name)
    log.info("allocator_configured", retain_freed_memory=retain_freed_memory())
    metrics = create_metrics()
    client = make_s3_client(
        settings.storage.endpoint,
        settings.storage.access_key,
        settings.storage.secret_key,
        settings.storage.region,
    )
    raw_store = S3Store(client, settings.storage.work_bucket)
    store = MeteredStore(raw_store, metrics, stage_name)
    context = WorkerContext(settings, environ, store, client, metrics)
    try:
        raw_store.ensure_bucket()
        built = build(context)
    except ConfigError as e:
        log.error("config_invalid", problems=e.problems)
        return 2
    except CovidCtError as e:
        log.error("startup_failed", error=str(e))
        return 1
    options = WorkerOptions(
        amqp_url=settings.broker.amqp_url,
        exchange=settings.broker.exchange,
        prefetch=settings.broker.prefetch,
        retry_delays=settings.broker.retry_delays,
        extra_queues=built.extra_queues,
        setup=built.setup,
    )
    worker = Worker(built.stage, store, metrics, options)
    checks: dict[str, Callable[[], bool]] = {
        "broker": worker.connected.is_set,
        "storage": raw_store.ping,
        **built.readiness,
    }
    health = HealthServer(
        metrics.registry,
        lambda: {name: check() for name, check in checks.items()},
        "0.0.0.0",  # noqa: S104 (probes and Prometheus reach the pod address)
        settings.process.metrics_port,
    ).start()

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("stop_requested", signal=signal.Signals(signum).name)
        worker.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for task in built.background:
        task(worker)
    log.info("worker_starting", metrics_port=health.port)
    try:
        worker.run()
    finally:
        health.stop()
    return 0


def exit_with(code: int) -> None:
    """For console-script mains: exit the process with ``code``."""
    sys.exit(code)
