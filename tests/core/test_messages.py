from __future__ import annotations

import json

import pytest

from covidct_core.errors import MessageValidationError
from covidct_core.messages import (
    MASK_READY,
    SERIES_READY,
    JobIdentity,
    ModelRef,
    ObjectRef,
    SegmentationSummary,
    encode_message,
    job_failed,
    mask_ready,
    parse_message,
    series_ready,
)

SHA = "a" * 64


def identity() -> JobIdentity:
    return JobIdentity(
        job_id="0123456789abcdef",
        study_instance_uid="1.2.3",
        series_instance_uid="1.2.3.4",
        correlation_id="corr-1",
        first_seen_at="2026-12-04T10:00:00.000Z",
        instance_set_sha256=SHA,
    )


def test_series_ready_round_trips_through_json() -> None:
    volume = ObjectRef("work", "volumes/0123456789abcdef/image.mha", 10, SHA)
    meta = ObjectRef("work", "volumes/0123456789abcdef/series.json", 5, SHA)
    message = series_ready(identity(), volume, meta, {"ingest": 1.5})
    parsed = parse_message(encode_message(message), SERIES_READY)
    assert parsed == message
    assert ObjectRef.from_dict(parsed["volume"]) == volume


def test_mask_ready_carries_upstream_identity_and_model() -> None:
    upstream = series_ready(
        identity(), ObjectRef("w", "v", 1, SHA), ObjectRef("w", "s", 1, SHA), {"ingest": 1.0}
    )
    message = mask_ready(
        upstream,
        ObjectRef("w", "m", 1, SHA),
        ModelRef("lung_seg", "1.0.0", SHA),
        SegmentationSummary(4200.0, 0.97),
        {"segment": 2.0},
    )
    assert message["schema"] == MASK_READY
    assert message["job_id"] == upstream["job_id"]
    assert message["timings"] == {"ingest": 1.0, "segment": 2.0}
    assert ModelRef.from_dict(message["segmentation_model"]).tag == "lung_seg@1.0.0"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"x": 1}', "no 'schema'"),
        (b'{"schema": "covidct.unknown/v9"}', "unknown message schema"),
    ],
)
def test_malformed_bodies_are_rejected_with_a_reason(body: bytes, fragment: str) -> None:
    with pytest.raises(MessageValidationError, match=fragment):
        parse_message(body)


def test_schema_violation_names_the_field() -> None:
    message = series_ready(identity(), ObjectRef("w", "v", 1, SHA), ObjectRef("w", "s", 1, SHA), {})
    message["volume"]["sha256"] = "not-a-hash"
    with pytest.raises(MessageValidationError, match="volume/sha256"):
        parse_message(json.dumps(message).encode())


def test_wrong_type_is_refused() -> None:
    failed = job_failed("segment", "NO_LUNG_FOUND", "no lung", None, None)
    with pytest.raises(MessageValidationError, match="expected"):
        parse_message(encode_message(failed), SERIES_READY)
