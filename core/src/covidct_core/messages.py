"""Versioned message contracts (v1), validated against the JSON Schemas in ``schemas/``.

Messages travel as JSON dicts. Each type has a ``schema`` field naming its contract, e.g.
``covidct.series-ready/v1``. The dataclasses here are thin typed views that build and read
those dicts; :func:`parse_message` validates a raw body and returns the dict.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any, cast

import fastjsonschema

from covidct_core.errors import MessageValidationError

SERIES_READY = "covidct.series-ready/v1"
MASK_READY = "covidct.mask-ready/v1"
RESULT_READY = "covidct.result-ready/v1"
JOB_FAILED = "covidct.job-failed/v1"
OBJECT_EVENT = "covidct.object-event/v1"
SERIES_CHECK = "covidct.series-check/v1"
MANIFEST = "covidct.manifest/v1"

SCHEMA_FILES = {
    SERIES_READY: "series-ready.v1.json",
    MASK_READY: "mask-ready.v1.json",
    RESULT_READY: "result-ready.v1.json",
    JOB_FAILED: "job-failed.v1.json",
    OBJECT_EVENT: "object-event.v1.json",
    SERIES_CHECK: "series-check.v1.json",
    MANIFEST: "manifest.v1.json",
}

Message = dict[str, Any]


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_message_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class ObjectRef:
    """A pointer to one object in object storage, with its size and sha256."""

    bucket: str
    key: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ObjectRef:
        return cls(str(data["bucket"]), str(data["key"]), int(data["size"]), str(data["sha256"]))


@dataclass(frozen=True)
class ModelRef:
    """The identity of a model bundle: name, version and sha256 of its weights."""

    name: str
    version: str
    sha256: str

    @property
    def tag(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelRef:
        return cls(str(data["name"]), str(data["version"]), str(data["sha256"]))


@dataclass(frozen=True)
class JobIdentity:
    """Fields every job message carries."""

    job_id: str
    study_instance_uid: str
    series_instance_uid: str
    correlation_id: str
    first_seen_at: str
    instance_set_sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_message(cls, message: Message) -> JobIdentity:
        return cls(
            job_id=message["job_id"],
            study_instance_uid=message["study_instance_uid"],
            series_instance_uid=message["series_instance_uid"],
            correlation_id=message["correlation_id"],
            first_seen_at=message["first_seen_at"],
            instance_set_sha256=message.get("instance_set_sha256", ""),
        )


def envelope(schema: str, attempt: int = 0, **fields: Any) -> Message:
    """Build a message dict with the common envelope fields and validate it."""
    message: Message = {
        "schema": schema,
        "message_id": new_message_id(),
        "created_at": utc_now_iso(),
        "attempt": attempt,
        **fields,
    }
    validate_message(message)
    return message


def series_ready(
    identity: JobIdentity, volume: ObjectRef, series_json: ObjectRef, timings: dict[str, float]
) -> Message:
    return envelope(
        SERIES_READY,
        **identity.to_dict(),
        volume=volume.to_dict(),
        series_metadata=series_json.to_dict(),
        timings=timings,
    )


@dataclass(frozen=True)
class SegmentationSummary:
    """What segment reports about a mask, beyond the mask object itself."""

    lung_volume_ml: float
    model_vs_classical_dice: float | None
    qa_flags: list[str] = field(default_factory=list)


def mask_ready(
    upstream: Message,
    mask: ObjectRef,
    model: ModelRef,
    summary: SegmentationSummary,
    timings: dict[str, float],
) -> Message:
    return envelope(
        MASK_READY,
        **JobIdentity.from_message(upstream).to_dict(),
        volume=upstream["volume"],
        series_metadata=upstream["series_metadata"],
        mask=mask.to_dict(),
        segmentation_model=model.to_dict(),
        lung_volume_ml=summary.lung_volume_ml,
        model_vs_classical_dice=summary.model_vs_classical_dice,
        qa_flags=list(summary.qa_flags),
        timings={**upstream.get("timings", {}), **timings},
    )


def result_ready(
    upstream: Message,
    result_csv: ObjectRef,
    result_json: ObjectRef,
    model: ModelRef,
    probability_covid19: float,
    qa_flags: list[str],
    timings: dict[str, float],
) -> Message:
    return envelope(
        RESULT_READY,
        **JobIdentity.from_message(upstream).to_dict(),
        segmentation_model=upstream["segmentation_model"],
        classification_model=model.to_dict(),
        result_csv=result_csv.to_dict(),
        result_json=result_json.to_dict(),
        probability_covid19=probability_covid19,
        probability_non_covid19=1.0 - probability_covid19,
        qa_flags=list(qa_flags),
        timings={**upstream.get("timings", {}), **timings},
    )


def job_failed(
    stage: str,
    code: str,
    reason: str,
    error_object: ObjectRef | None,
    upstream: Message | None,
) -> Message:
    upstream = upstream or {}
    return envelope(
        JOB_FAILED,
        stage=stage,
        code=code,
        reason=reason,
        error=error_object.to_dict() if error_object else None,
        job_id=upstream.get("job_id"),
        study_instance_uid=upstream.get("study_instance_uid"),
        series_instance_uid=upstream.get("series_instance_uid"),
        correlation_id=upstream.get("correlation_id") or new_message_id(),
    )


@cache
def load_schema(schema: str) -> dict[str, Any]:
    filename = SCHEMA_FILES.get(schema)
    if filename is None:
        raise MessageValidationError(f"unknown message schema {schema!r}")
    text = resources.files("covidct_core").joinpath("schemas", filename).read_text()
    return cast(dict[str, Any], json.loads(text))


@cache
def _validator(schema: str) -> Callable[[Any], Any]:
    """A compiled validator (fastjsonschema): validation is on every message's hot path."""
    return cast(Callable[[Any], Any], fastjsonschema.compile(load_schema(schema)))


def validate_message(message: Message, expected: str | None = None) -> Message:
    schema_name = message.get("schema") if isinstance(message, dict) else None
    if not isinstance(schema_name, str):
        raise MessageValidationError("message has no 'schema' field")
    if expected is not None and schema_name != expected:
        raise MessageValidationError(f"expected a {expected} message, got {schema_name}")
    validate = _validator(schema_name)
    try:
        validate(message)
    except fastjsonschema.JsonSchemaValueException as e:
        path = "/".join(str(p) for p in e.path[1:]) or "(root)"
        raise MessageValidationError(f"{schema_name} invalid at {path}: {e.message}") from e
    return message


def parse_message(body: bytes, expected: str | tuple[str, ...] | None = None) -> Message:
    """Decode and validate a message body. Raises MessageValidationError with the reason."""
    try:
        message = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MessageValidationError(f"body is not JSON: {e}") from e
    if not isinstance(message, dict):
        raise MessageValidationError("body is not a JSON object")
    if isinstance(expected, tuple):
        if message.get("schema") not in expected:
            raise MessageValidationError(
                f"expected one of {', '.join(expected)}, got {message.get('schema')!r}"
            )
        return validate_message(message)
    return validate_message(message, expected)


def encode_message(message: Message) -> bytes:
    return json.dumps(message, separators=(",", ":"), sort_keys=True).encode()
