"""Build a mask-ready message and its objects in a LocalStore, as segment would."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np

from covidct_core.messages import (
    JobIdentity,
    Message,
    ModelRef,
    ObjectRef,
    SegmentationSummary,
    mask_ready,
    series_ready,
    utc_now_iso,
)
from covidct_core.storage import LocalStore
from covidct_core.volume_io import Volume, to_mha_bytes

JOB_ID = "0123456789abcdef0123456789abcdef"
SEGMENTATION = ModelRef("lung_seg", "1.0.0", "ab" * 32)
SERIES_QA = {
    "format": "covidct.series/1",
    "modality": "CT",
    "qa": {
        "slices_used": 64,
        "decisions": [{"code": "SLICE_GAP", "action": "interpolated", "detail": "one gap"}],
    },
}


def put(store: LocalStore, key: str, data: bytes) -> ObjectRef:
    info = store.put_bytes(key, data)
    assert info.sha256 is not None
    return ObjectRef(store.bucket, key, info.size, info.sha256)


def mask_ready_message(store: LocalStore, volume: Volume, mask: np.ndarray) -> Message:
    identity = JobIdentity(
        job_id=JOB_ID,
        study_instance_uid="1.2.826.0.1.3680043.8.498.1",
        series_instance_uid="1.2.826.0.1.3680043.8.498.2",
        correlation_id="corr-1",
        first_seen_at=utc_now_iso(),
        instance_set_sha256="cd" * 32,
    )
    volume_ref = put(store, f"volumes/{JOB_ID}/image.mha", to_mha_bytes(volume))
    series_ref = put(store, f"volumes/{JOB_ID}/series.json", json.dumps(SERIES_QA).encode())
    upstream = series_ready(identity, volume_ref, series_ref, {"ingest_seconds": 1.25})
    mask_volume = replace(volume, array=mask.astype(np.uint8))
    mask_key = f"masks/{JOB_ID}/{SEGMENTATION.tag}/lung.mha"
    mask_ref = put(store, mask_key, to_mha_bytes(mask_volume))
    voxel_ml = float(np.prod(volume.spacing)) / 1000
    summary = SegmentationSummary(float(mask.sum()) * voxel_ml, 0.97, ["SEGMENT_NOTE"])
    return mask_ready(upstream, mask_ref, SEGMENTATION, summary, {"segment_seconds": 2.5})
