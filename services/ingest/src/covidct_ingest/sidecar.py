"""The ``series.json`` sidecar: non-identifying series facts plus the assembly QA report.

It never holds patient names, IDs or birth dates (they are never parsed), and no timestamps,
so the same instances always give the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from covidct_core.volume_io import Volume
from covidct_ingest.assembly import AssemblyPlan
from covidct_ingest.config import IngestConfig, to_mapping
from covidct_ingest.grouping import SeriesGroup
from covidct_ingest.headers import InstanceHeader

SERIES_JSON_FORMAT = "covidct.series/1"


@dataclass(frozen=True)
class SkippedInstance:
    """An object left out of a series (or a bag), and why."""

    key: str
    code: str
    reason: str


def _sorted_unique(values: Sequence[Any]) -> list[Any]:
    return sorted({v for v in values if v is not None})


def build_series_json(
    group: SeriesGroup,
    headers: Sequence[InstanceHeader],
    plan: AssemblyPlan,
    volume: Volume,
    config: IngestConfig,
    skipped: Sequence[SkippedInstance] = (),
) -> dict[str, Any]:
    first = headers[0]
    analysis = plan.spacing_analysis
    used = sorted({s.instance for s in plan.slices})
    return {
        "format": SERIES_JSON_FORMAT,
        "job_id": group.job_id,
        "series_key": group.series_key,
        "derived_identity": group.derived_identity,
        "study_instance_uid": first.study_instance_uid,
        "series_instance_uid": first.series_instance_uid,
        "frame_of_reference_uid": first.frame_of_reference_uid,
        "sop_class_uid": first.sop_class_uid,
        "modality": first.modality or "CT",
        "manufacturer": first.manufacturer,
        "series_number": first.series_number,
        "series_description": first.series_description,
        "convolution_kernel": first.convolution_kernel,
        "image_type": list(first.image_type),
        "transfer_syntaxes": _sorted_unique([h.transfer_syntax_uid for h in headers]),
        "instance_count": len(group.instance_keys),
        "instance_set_sha256": group.instance_set_sha256,
        "instance_keys": list(group.instance_keys),
        "volume": {
            "shape_zyx": list(volume.array.shape),
            "spacing_xyz": list(volume.spacing),
            "origin_xyz": list(volume.origin),
            "direction": list(volume.direction),
            "dtype": str(volume.array.dtype),
            "units": "HU",
            "air_hu": config.conversion.air_hu,
        },
        "qa": {
            "slices_used": len(plan.slices),
            "slices_out": int(volume.array.shape[0]),
            "instances_used": len(used),
            "slice_thickness_mm": _sorted_unique([h.slice_thickness for h in headers]),
            "pixel_spacing_mm": list(headers[0].pixel_spacing or ()),
            "spacing": None
            if analysis is None
            else {
                "typical_mm": analysis.typical,
                "min_mm": analysis.minimum,
                "max_mm": analysis.maximum,
                "uniform": analysis.uniform,
            },
            "gantry_tilt_tag_deg": _sorted_unique([h.gantry_detector_tilt for h in headers]),
            "gantry_tilt_corrected_deg": plan.tilt_deg,
            "resampled": plan.needs_resampling,
            "decisions": [
                {"code": d.code, "action": d.action, "detail": d.detail} for d in plan.decisions
            ],
            "deduplicated": list(plan.deduplicated),
            "skipped_instances": [
                {"key": s.key, "code": s.code, "reason": s.reason} for s in skipped
            ],
            "rescale_slopes": _sorted_unique([s.slope for s in plan.slices]),
            "rescale_intercepts": _sorted_unique([s.intercept for s in plan.slices]),
            "pixel_padding_values": _sorted_unique([h.pixel_padding_value for h in headers]),
        },
        "ingest_config": to_mapping(config),
    }
