"""RabbitMQ names and idempotent topology declaration.

Queue names start with the exchange name (``covidct`` by default), so that a test or a
second pipeline on the same broker can use its own set. Per stage ``S``: quorum queue
``covidct.S`` bound to ``S.#`` on the topic exchange; classic
retry queues ``covidct.S.retry.<n>-<ttl>s`` whose TTL dead-letters back to ``covidct.S``; a parking
queue ``covidct.S.parked``. The quorum queue's delivery limit parks a message that keeps
killing its workers. Delayed messages go through the ``<exchange>.delayed`` fanout exchange
to a queue whose per-message TTL dead-letters them to the main exchange with their own
routing key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STAGES = ("ingest", "segment", "classify")
RESULT_ROUTING_KEY = "result.ready"
FAILED_ROUTING_KEY = "job.failed"
DELIVERY_LIMIT = 10


@dataclass(frozen=True)
class StageQueues:
    """The queue names of one stage."""

    stage: str
    exchange: str
    retry_delays: tuple[float, ...]

    @property
    def main(self) -> str:
        return f"{self.exchange}.{self.stage}"

    @property
    def parked(self) -> str:
        return f"{self.main}.parked"

    @property
    def retry_prefix(self) -> str:
        return f"{self.main}.retry."

    def retry(self, level: int) -> str:
        """Retry queue of ``level``; its TTL is in the name so a new delay is a new queue."""
        return f"{self.retry_prefix}{level}-{self.retry_delays[level]:g}s"

    @property
    def binding(self) -> str:
        return f"{self.stage}.#"


def results_queue(exchange: str) -> str:
    return f"{exchange}.results"


def failed_queue(exchange: str) -> str:
    return f"{exchange}.failed"


def all_queues(exchange: str, retry_delays: tuple[float, ...]) -> list[str]:
    """Every queue :func:`declare_topology` declares (tests delete them afterwards)."""
    names = [delayed_queue(exchange), results_queue(exchange), failed_queue(exchange)]
    for stage in STAGES:
        queues = StageQueues(stage, exchange, retry_delays)
        names += [queues.main, queues.parked]
        names += [queues.retry(level) for level in range(len(retry_delays))]
    return names


def minio_events_queue(exchange: str) -> str:
    """The queue an ingest worker binds to MinIO's bucket-notification exchange."""
    return f"{exchange}.ingest.minio"


def delete_topology(channel: Any, exchange: str, retry_delays: tuple[float, ...]) -> None:
    """Delete every queue and exchange of ``exchange`` that the workers declare (for tests
    and benchmarks, which run on their own exchange names)."""
    for queue in [*all_queues(exchange, retry_delays), minio_events_queue(exchange)]:
        channel.queue_delete(queue)
    channel.exchange_delete(exchange)
    channel.exchange_delete(delayed_exchange(exchange))


def delayed_exchange(exchange: str) -> str:
    return f"{exchange}.delayed"


def delayed_queue(exchange: str) -> str:
    return f"{exchange}.delayed"


def declare_topology(channel: Any, exchange: str, retry_delays: tuple[float, ...]) -> None:
    """Declare every exchange and queue the pipeline uses. Safe to repeat."""
    channel.exchange_declare(exchange=exchange, exchange_type="topic", durable=True)
    channel.exchange_declare(
        exchange=delayed_exchange(exchange), exchange_type="fanout", durable=True
    )
    channel.queue_declare(
        queue=delayed_queue(exchange),
        durable=True,
        arguments={"x-dead-letter-exchange": exchange},
    )
    channel.queue_bind(queue=delayed_queue(exchange), exchange=delayed_exchange(exchange))
    for stage in STAGES:
        declare_stage(channel, StageQueues(stage, exchange, retry_delays))
    for queue, key in (
        (results_queue(exchange), RESULT_ROUTING_KEY),
        (failed_queue(exchange), FAILED_ROUTING_KEY),
    ):
        channel.queue_declare(queue=queue, durable=True, arguments={"x-queue-type": "quorum"})
        channel.queue_bind(queue=queue, exchange=exchange, routing_key=key)


def declare_stage(channel: Any, queues: StageQueues) -> None:
    channel.queue_declare(queue=queues.parked, durable=True)
    channel.queue_declare(
        queue=queues.main,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": queues.parked,
        },
    )
    channel.queue_bind(queue=queues.main, exchange=queues.exchange, routing_key=queues.binding)
    for level, delay in enumerate(queues.retry_delays):
        channel.queue_declare(
            queue=queues.retry(level),
            durable=True,
            arguments={
                "x-message-ttl": int(delay * 1000),
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": queues.main,
            },
        )
