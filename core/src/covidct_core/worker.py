"""The worker shell: consume, run the stage off the I/O thread, publish, ack.

receive -> validate -> idempotency check -> handler -> write outputs -> publish next
(confirmed) -> ack. The handler runs on a worker thread so heartbeats keep flowing during
minutes of inference; publishing and acking happen on the connection's thread through
``add_callback_threadsafe``. A permanent error writes an error object, parks the message,
publishes job-failed and acks. A retryable or unexpected error goes to the retry queues
until the limit (counted from ``x-death``), then it is parked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pika
import pika.exceptions
import structlog
from pika.adapters.blocking_connection import BlockingChannel

from covidct_core.broker import (
    connect,
    publish_message,
    publish_outbound,
    retries_so_far,
    send_to_parking,
    send_to_retry,
)
from covidct_core.error_records import write_error
from covidct_core.errors import (
    BrokerError,
    CovidCtError,
    MessageValidationError,
    PermanentError,
)
from covidct_core.messages import RESULT_READY, Message, job_failed, parse_message
from covidct_core.metrics import StageMetrics, prime_stage
from covidct_core.stage import Outbound, Stage, run_stage
from covidct_core.storage import ObjectStore
from covidct_core.topology import FAILED_ROUTING_KEY, StageQueues, declare_topology

log = structlog.get_logger()

# A decoder turns a body into a message; None means "nothing to do" (acked, counted ok).
Decoder = Callable[[bytes], Message | None]
CONNECTION_ERRORS = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.AMQPChannelError,
    pika.exceptions.StreamLostError,
    pika.exceptions.ConnectionClosed,
    pika.exceptions.ChannelClosed,
    ConnectionError,
    OSError,
)


@dataclass(frozen=True)
class Done:
    outbound: list[Outbound]
    reused: bool


@dataclass(frozen=True)
class Retry:
    reason: str


@dataclass(frozen=True)
class Park:
    code: str
    reason: str
    failed: Message | None = None


Disposition = Done | Retry | Park


@dataclass
class WorkerOptions:
    amqp_url: str
    exchange: str = "covidct"
    prefetch: int = 1
    retry_delays: tuple[float, ...] = (10.0, 60.0, 300.0)
    heartbeat: int = 30
    max_backoff: float = 30.0
    extra_queues: Mapping[str, Decoder] = field(default_factory=dict)
    # declares what the extra queues need (e.g. the MinIO events exchange), on each connect
    setup: Callable[[BlockingChannel], None] | None = None


class Worker:
    """Runs one stage against RabbitMQ until :meth:`request_stop`."""

    def __init__(
        self, stage: Stage, store: ObjectStore, metrics: StageMetrics, options: WorkerOptions
    ) -> None:
        self.stage = stage
        self.store = store
        self.metrics = metrics
        self.options = options
        self.queues = StageQueues(stage.name, options.exchange, options.retry_delays)
        self.decoders: dict[str, Decoder] = {self.queues.main: self._decode_own}
        self.decoders.update(options.extra_queues)
        self.executor = ThreadPoolExecutor(
            max_workers=max(1, options.prefetch), thread_name_prefix=f"{stage.name}-work"
        )
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._active = 0
        self._active_lock = threading.Lock()
        self._channel: BlockingChannel | None = None
        prime_stage(metrics, stage.name)
        self._inflight_gauge = metrics.inflight.labels(stage=stage.name)
        self._duration = metrics.duration.labels(stage=stage.name)

    # -- lifecycle -------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Stop consuming, finish the current jobs, ack them, then return from run()."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def stop_event(self) -> threading.Event:
        """Set when the worker is asked to stop; background helpers wait on it."""
        return self._stop

    def run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            try:
                self._run_connection()
                backoff = 1.0
            except CONNECTION_ERRORS as e:
                self.connected.clear()
                log.warning("broker_connection_lost", error=str(e), retry_in_s=backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.options.max_backoff)
        self.executor.shutdown(wait=True)
        log.info("worker_stopped", stage=self.stage.name)

    def _run_connection(self) -> None:
        connection = connect(self.options.amqp_url, self.options.heartbeat)
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            declare_topology(channel, self.options.exchange, self.options.retry_delays)
            if self.options.setup is not None:
                self.options.setup(channel)
            channel.basic_qos(prefetch_count=self.options.prefetch)
            self._channel = channel
            tags = [
                channel.basic_consume(
                    queue, partial(self._on_message, connection, decoder=decoder, queue=queue)
                )
                for queue, decoder in self.decoders.items()
            ]
            self.connected.set()
            log.info("worker_consuming", stage=self.stage.name, queues=list(self.decoders))
            while not self._stop.is_set():
                connection.process_data_events(time_limit=0.5)
            for tag in tags:
                channel.basic_cancel(tag)
            while self._active_count() > 0:
                connection.process_data_events(time_limit=0.2)
            log.info("worker_drained", stage=self.stage.name)
        finally:
            self.connected.clear()
            self._channel = None
            if connection.is_open:
                try:
                    connection.close()
                except CONNECTION_ERRORS:
                    log.debug("connection_close_failed")

    def _active_count(self) -> int:
        with self._active_lock:
            return self._active

    def _change_active(self, delta: int) -> None:
        with self._active_lock:
            self._active += delta
        self._inflight_gauge.inc(delta)

    # -- I/O thread ------------------------------------------------------------------------
    def _on_message(
        self,
        connection: pika.BlockingConnection,
        channel: BlockingChannel,
        method: Any,
        properties: pika.BasicProperties,
        body: bytes,
        *,
        decoder: Decoder,
        queue: str,
    ) -> None:
        self._change_active(1)
        self.executor.submit(
            self._work, connection, channel, method.delivery_tag, properties, body, decoder
        )

    def _finish(
        self,
        channel: BlockingChannel,
        tag: int,
        properties: pika.BasicProperties,
        body: bytes,
        disposition: Disposition,
        started: float,
    ) -> None:
        stage = self.stage.name
        try:
            if not self._is_current(channel):
                log.warning("delivery_stale_will_be_redelivered", stage=stage)
                return
            outcome = self._settle(channel, properties, body, disposition)
            channel.basic_ack(tag)
            self.metrics.observe_outcome(stage, outcome)
            self._duration.observe(time.monotonic() - started)
        except BrokerError as e:
            log.error("settle_failed_requeue", stage=stage, error=str(e))
            if channel.is_open:
                channel.basic_nack(tag, requeue=True)
        except CONNECTION_ERRORS as e:
            log.warning("settle_failed_connection", stage=stage, error=str(e))
        finally:
            self._change_active(-1)

    def _settle(
        self,
        channel: BlockingChannel,
        properties: pika.BasicProperties,
        body: bytes,
        disposition: Disposition,
    ) -> str:
        exchange = self.options.exchange
        if isinstance(disposition, Done):
            for item in disposition.outbound:
                publish_outbound(channel, exchange, item)
                self._observe_end_to_end(item.message)
            return "ok"
        if isinstance(disposition, Retry):
            retries = retries_so_far(properties.headers, self.queues)
            if retries < len(self.queues.retry_delays):
                send_to_retry(channel, self.queues, body, properties, retries, disposition.reason)
                log.warning("message_retried", stage=self.stage.name, retries=retries + 1)
                return "retried"
            reason = f"gave up after {retries} retries: {disposition.reason}"
            send_to_parking(channel, self.queues, body, properties, "RETRIES_EXHAUSTED", reason)
            publish_message(
                channel,
                exchange,
                FAILED_ROUTING_KEY,
                job_failed(self.stage.name, "RETRIES_EXHAUSTED", reason, None, None),
            )
            log.error("message_parked", stage=self.stage.name, code="RETRIES_EXHAUSTED")
            return "parked"
        send_to_parking(
            channel, self.queues, body, properties, disposition.code, disposition.reason
        )
        if disposition.failed is not None:
            publish_message(channel, exchange, FAILED_ROUTING_KEY, disposition.failed)
        return "parked"

    def _observe_end_to_end(self, message: Message) -> None:
        """A result-ready closes a job: observe first instance seen -> result written."""
        if message.get("schema") != RESULT_READY or not message.get("first_seen_at"):
            return
        try:
            seen = datetime.fromisoformat(str(message["first_seen_at"]).replace("Z", "+00:00"))
        except ValueError:
            return
        self.metrics.end_to_end.observe(max(0.0, (datetime.now(UTC) - seen).total_seconds()))

    def _is_current(self, channel: BlockingChannel) -> bool:
        current = self._channel
        return current is not None and current is channel and bool(channel.is_open)

    # -- worker thread ---------------------------------------------------------------------
    def _decode_own(self, body: bytes) -> Message | None:
        return parse_message(body, self.stage.accepts)

    def _work(
        self,
        connection: pika.BlockingConnection,
        channel: BlockingChannel,
        tag: int,
        properties: pika.BasicProperties,
        body: bytes,
        decoder: Decoder,
    ) -> None:
        started = time.monotonic()
        disposition = self._dispose(body, decoder)
        callback = partial(self._finish, channel, tag, properties, body, disposition, started)
        try:
            connection.add_callback_threadsafe(callback)
        except CONNECTION_ERRORS as e:
            log.warning("delivery_stale_will_be_redelivered", stage=self.stage.name, error=str(e))
            self._change_active(-1)

    def _dispose(self, body: bytes, decoder: Decoder) -> Disposition:
        stage = self.stage.name
        message: Message | None = None
        try:
            message = decoder(body)
            if message is None:
                return Done([], reused=False)
            result = run_stage(self.stage, message, self.store)
            log.info(
                "message_handled",
                stage=stage,
                job_id=message.get("job_id"),
                series_uid=message.get("series_instance_uid"),
                reused=result.reused,
                published=len(result.outbound),
            )
            return Done(result.outbound, result.reused)
        except MessageValidationError as e:
            return self._park(stage, "INVALID_MESSAGE", str(e), [], message, body)
        except PermanentError as e:
            return self._park(stage, e.code, e.reason, e.inputs, message, body)
        except CovidCtError as e:
            log.warning("message_failed_retryable", stage=stage, error=str(e))
            return Retry(f"{type(e).__name__}: {e}")
        except Exception as e:
            log.exception("message_failed_unexpected", stage=stage)
            return Retry(f"{type(e).__name__}: {e}")

    def _park(
        self,
        stage: str,
        code: str,
        reason: str,
        inputs: list[str],
        message: Message | None,
        body: bytes,
    ) -> Disposition:
        log.error("message_rejected", stage=stage, code=code, reason=reason)
        try:
            ref = write_error(self.store, stage, code, reason, inputs, message, body)
        except CovidCtError as e:
            return Retry(f"could not write error object: {e}")
        return Park(code, reason, job_failed(stage, code, reason, ref, message))
