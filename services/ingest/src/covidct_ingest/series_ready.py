"""The volume a finished assembly writes, and the series-ready message that names it."""

from __future__ import annotations

import json

from covidct_core.messages import JobIdentity, Message, ObjectRef, series_ready
from covidct_core.storage import ObjectStore
from covidct_core.volume_io import to_mha_bytes
from covidct_ingest.convert import ConversionResult


def write_volume(
    work: ObjectStore,
    result: ConversionResult,
    correlation_id: str,
    first_seen_at: str,
    seconds: float,
) -> Message:
    """Write ``volumes/<job_id>/image.mha`` and ``series.json``; return the series-ready."""
    job_id = result.job_id
    volume_info = work.put_bytes(
        f"volumes/{job_id}/image.mha", to_mha_bytes(result.volume), {"stage": "ingest"}
    )
    series_json = result.series_json
    series_info = work.put_bytes(
        f"volumes/{job_id}/series.json",
        json.dumps(series_json, indent=2, sort_keys=True).encode(),
        {"content-type": "application/json"},
    )
    identity = JobIdentity(
        job_id=job_id,
        study_instance_uid=str(series_json.get("study_instance_uid") or ""),
        series_instance_uid=str(series_json.get("series_instance_uid") or result.series_key),
        correlation_id=correlation_id,
        first_seen_at=first_seen_at,
        instance_set_sha256=str(series_json.get("instance_set_sha256", "")),
    )
    volume = ObjectRef(work.bucket, volume_info.key, volume_info.size, volume_info.sha256 or "")
    meta = ObjectRef(work.bucket, series_info.key, series_info.size, series_info.sha256 or "")
    return series_ready(identity, volume, meta, {"ingest": seconds})
