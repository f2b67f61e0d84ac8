"""Publishing over pika with publisher confirms, and the retry/park bookkeeping.

Everything here runs on the thread that owns the connection.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from covidct_core.errors import PublishNotConfirmedError, UnroutableMessageError
from covidct_core.messages import Message, encode_message
from covidct_core.stage import Outbound
from covidct_core.topology import StageQueues, delayed_exchange

PERSISTENT = pika.DeliveryMode.Persistent
RETRY_HEADER = "x-covidct-retries"


def connect(amqp_url: str, heartbeat: int = 30) -> pika.BlockingConnection:
    params = pika.URLParameters(amqp_url)
    params.heartbeat = heartbeat
    params.blocked_connection_timeout = 300
    params.connection_attempts = 1
    return pika.BlockingConnection(params)


def publish_confirmed(
    channel: BlockingChannel,
    exchange: str,
    routing_key: str,
    body: bytes,
    headers: Mapping[str, Any] | None = None,
    expiration_ms: int | None = None,
    message_id: str | None = None,
    correlation_id: str | None = None,
) -> None:
    """Publish persistently with ``mandatory``; the channel must be in confirm mode.

    Raises UnroutableMessageError when no queue matches and PublishNotConfirmedError when
    the broker nacks.
    """
    properties = pika.BasicProperties(
        delivery_mode=PERSISTENT,
        content_type="application/json",
        headers=dict(headers or {}),
        expiration=str(expiration_ms) if expiration_ms is not None else None,
        message_id=message_id,
        correlation_id=correlation_id,
        timestamp=int(time.time()),
    )
    try:
        channel.basic_publish(exchange, routing_key, body, properties, mandatory=True)
    except pika.exceptions.UnroutableError as e:
        raise UnroutableMessageError(
            f"message to {exchange or '(default)'}/{routing_key} matched no queue"
        ) from e
    except pika.exceptions.NackError as e:
        raise PublishNotConfirmedError(f"broker nacked message to {routing_key}") from e


def publish_message(
    channel: BlockingChannel, exchange: str, routing_key: str, message: Message
) -> None:
    publish_confirmed(
        channel,
        exchange,
        routing_key,
        encode_message(message),
        message_id=str(message.get("message_id", "")) or None,
        correlation_id=str(message.get("correlation_id", "")) or None,
    )


def publish_outbound(channel: BlockingChannel, exchange: str, item: Outbound) -> None:
    """Publish one outbound message; a delayed one goes through the delay queue."""
    if item.delay_seconds > 0:
        publish_confirmed(
            channel,
            delayed_exchange(exchange),
            item.routing_key,
            encode_message(item.message),
            expiration_ms=int(item.delay_seconds * 1000),
            message_id=str(item.message.get("message_id", "")) or None,
        )
    else:
        publish_message(channel, exchange, item.routing_key, item.message)


def retries_so_far(headers: Mapping[str, Any] | None, queues: StageQueues) -> int:
    """How many times this message came back from a retry queue.

    Counted from the broker's ``x-death`` header (entries for this stage's retry queues with
    reason ``expired``). Brokers that do not keep a client-copied ``x-death`` are covered by
    our own header, set when the message is sent to a retry queue; the larger count wins.
    """
    headers = headers or {}
    from_x_death = 0
    for entry in headers.get("x-death") or []:
        queue = _text(entry.get("queue"))
        reason = _text(entry.get("reason"))
        if queue.startswith(queues.retry_prefix) and reason == "expired":
            from_x_death += int(entry.get("count", 1))
    own = headers.get(RETRY_HEADER, 0)
    return max(from_x_death, int(own) if isinstance(own, int | str) else 0)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value) if value is not None else ""


def send_to_retry(
    channel: BlockingChannel,
    queues: StageQueues,
    body: bytes,
    properties: pika.BasicProperties,
    retries: int,
    reason: str,
) -> None:
    """Send a message to the retry queue for its next attempt (``retries`` done so far)."""
    level = min(retries, len(queues.retry_delays) - 1)
    headers = dict(properties.headers or {})
    headers[RETRY_HEADER] = retries + 1
    headers["x-covidct-last-error"] = reason[:500]
    publish_confirmed(
        channel,
        "",
        queues.retry(level),
        body,
        headers=headers,
        message_id=properties.message_id,
        correlation_id=properties.correlation_id,
    )


def send_to_parking(
    channel: BlockingChannel,
    queues: StageQueues,
    body: bytes,
    properties: pika.BasicProperties | None,
    code: str,
    reason: str,
) -> None:
    """Park a message with its reason in headers; the body is kept byte for byte."""
    headers = dict((properties.headers if properties else None) or {})
    headers.update(
        {"x-parked-code": code, "x-parked-reason": reason[:1000], "x-parked-stage": queues.stage}
    )
    publish_confirmed(
        channel,
        "",
        queues.parked,
        body,
        headers=headers,
        message_id=properties.message_id if properties else None,
        correlation_id=properties.correlation_id if properties else None,
    )


class ConfirmedPublisher:
    """A publisher with its own connection for one thread (a poller, the CLI, tests).

    Reconnects once when the connection was lost while idle.
    """

    def __init__(self, amqp_url: str, exchange: str, declare: tuple[float, ...] | None = None):
        self.amqp_url = amqp_url
        self.exchange = exchange
        self.declare = declare
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None

    def _ensure(self) -> BlockingChannel:
        if self._connection is None or not self._connection.is_open or self._channel is None:
            from covidct_core.topology import declare_topology

            self._connection = connect(self.amqp_url)
            self._channel = self._connection.channel()
            self._channel.confirm_delivery()
            if self.declare is not None:
                declare_topology(self._channel, self.exchange, self.declare)
        return self._channel

    def publish(self, routing_key: str, message: Message) -> None:
        for attempt in (1, 2):
            try:
                publish_message(self._ensure(), self.exchange, routing_key, message)
                return
            except (pika.exceptions.AMQPConnectionError, pika.exceptions.StreamLostError):
                self._connection = None
                if attempt == 2:
                    raise

    def sleep(self, seconds: float) -> None:
        """Wait while keeping the connection's heartbeats flowing."""
        if self._connection is not None and self._connection.is_open:
            self._connection.sleep(seconds)
        else:
            time.sleep(seconds)

    def close(self) -> None:
        if self._connection is not None and self._connection.is_open:
            self._connection.close()
        self._connection = None
