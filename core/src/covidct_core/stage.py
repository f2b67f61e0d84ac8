"""The stage contract shared by the worker shell and the embedded shell.

A stage is an object with a ``name``, the message schemas it ``accepts``, a deterministic
``completion_key`` and a pure-ish ``handle`` that reads inputs from the store, writes its
output objects (deterministic keys) and returns the messages to publish next.

:func:`run_stage` adds idempotency: the list of outbound messages is stored under the
completion key *after* the outputs exist, so a redelivered message finds the work done and
only re-publishes exactly the same messages (same message ids).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from covidct_core.errors import StorageError
from covidct_core.messages import Message, validate_message
from covidct_core.storage import ObjectStore


@dataclass(frozen=True)
class Outbound:
    """One message to publish with its routing key."""

    routing_key: str
    message: Message
    delay_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "routing_key": self.routing_key,
            "message": self.message,
            "delay_seconds": self.delay_seconds,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outbound:
        return cls(
            str(data["routing_key"]),
            dict(data["message"]),
            float(data.get("delay_seconds", 0.0)),
        )


class Stage(Protocol):
    """What the worker and the embedded runner need from a stage."""

    @property
    def name(self) -> str:
        """The stage name: ``ingest``, ``segment`` or ``classify``."""
        ...

    @property
    def accepts(self) -> tuple[str, ...]:
        """The message schemas this stage handles."""
        ...

    def completion_key(self, message: Message) -> str | None:
        """Deterministic key of this message's completion record, or None for none."""
        ...

    def handle(self, message: Message) -> list[Outbound]:
        """Do the work: write outputs, return the next messages. Raise typed errors."""
        ...


@dataclass(frozen=True)
class StageRun:
    """What :func:`run_stage` did."""

    outbound: list[Outbound]
    reused: bool


def completion_record_key(stage: str, *parts: str) -> str:
    """``done/<stage>/<part>/.../record.json``: where a stage records a finished message."""
    return "/".join(["done", stage, *parts, "record.json"])


def run_stage(stage: Stage, message: Message, store: ObjectStore) -> StageRun:
    """Run ``stage`` on ``message`` once: reuse a completion record when it exists."""
    key = stage.completion_key(message)
    if key is not None:
        existing = _read_record(store, key)
        if existing is not None:
            return StageRun(existing, reused=True)
    outbound = stage.handle(message)
    for item in outbound:
        validate_message(item.message)
    if key is not None:
        write_record(store, key, outbound)
    return StageRun(outbound, reused=False)


def write_record(store: ObjectStore, key: str, outbound: list[Outbound]) -> None:
    """Record that a unit of work finished and which messages it published."""
    body = json.dumps([item.to_dict() for item in outbound], sort_keys=True).encode()
    store.put_bytes(key, body, {"content-type": "application/json"})


def read_record(store: ObjectStore, key: str) -> list[Outbound] | None:
    """The outbound messages of a finished unit of work, or None when not finished."""
    return _read_record(store, key)


def _read_record(store: ObjectStore, key: str) -> list[Outbound] | None:
    if store.head(key) is None:
        return None
    try:
        raw = json.loads(store.get_bytes(key))
    except (StorageError, json.JSONDecodeError):
        return None
    return [Outbound.from_dict(item) for item in raw]
