"""Group instance headers into series and derive deterministic series keys and job ids.

A series is keyed by its SeriesInstanceUID. Where that UID is empty, a stable identity is
derived from the facts that stay constant within one series (study and frame-of-reference UIDs,
orientation, matrix size, pixel spacing, series number, description, kernel...) and the group is
flagged ``derived_identity=True``.

``job_id`` is the first 16 hex digits of sha256 over the series key and the sorted instance
keys: the same instances give the same job, one more slice gives a new job.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from covidct_ingest.headers import InstanceHeader, instance_key

DERIVED_PREFIX = "derived-"
JOB_ID_HEX = 16


@dataclass(frozen=True)
class SeriesGroup:
    """Instances of one series: ``indices`` point into the header list given to grouping."""

    series_key: str
    derived_identity: bool
    indices: tuple[int, ...]
    instance_keys: tuple[str, ...]  # sorted, unique
    job_id: str
    instance_set_sha256: str


def _rounded(values: Sequence[float] | None, digits: int = 4) -> list[float] | None:
    return None if values is None else [round(float(v), digits) + 0.0 for v in values]


def series_identity(header: InstanceHeader) -> dict[str, object]:
    """The facts a derived series key hashes (constant within one series)."""
    return {
        "study": header.study_instance_uid,
        "frame_of_reference": header.frame_of_reference_uid,
        "modality": header.modality,
        "sop_class": header.sop_class_uid,
        "series_number": header.series_number,
        "description": header.series_description,
        "kernel": header.convolution_kernel,
        "image_type": list(header.image_type),
        "manufacturer": header.manufacturer,
        "rows": header.rows,
        "columns": header.columns,
        "pixel_spacing": _rounded(header.pixel_spacing),
        "orientation": _rounded(header.image_orientation),
        "slice_thickness": None
        if header.slice_thickness is None
        else round(header.slice_thickness, 3),
    }


def series_key_of(header: InstanceHeader) -> tuple[str, bool]:
    """``(series key, derived_identity)`` of one instance; safe to use in object keys."""
    if header.series_instance_uid:
        return header.series_instance_uid, False
    blob = json.dumps(series_identity(header), sort_keys=True, separators=(",", ":"))
    return DERIVED_PREFIX + hashlib.sha256(blob.encode()).hexdigest()[:24], True


def instance_set_sha256(instance_keys: Sequence[str]) -> str:
    """sha256 over the sorted, de-duplicated instance keys (one per line)."""
    joined = "\n".join(sorted(set(instance_keys)))
    return hashlib.sha256(joined.encode()).hexdigest()


def compute_job_id(series_key: str, instance_keys: Sequence[str]) -> str:
    """Deterministic job id: 16 hex of sha256(series key + sorted unique instance keys)."""
    joined = "\n".join([series_key, *sorted(set(instance_keys))])
    return hashlib.sha256(joined.encode()).hexdigest()[:JOB_ID_HEX]


def group_series(headers: Sequence[InstanceHeader]) -> list[SeriesGroup]:
    """Group headers by series key; groups come sorted by series key."""
    members: dict[str, list[int]] = {}
    derived: dict[str, bool] = {}
    for index, header in enumerate(headers):
        key, is_derived = series_key_of(header)
        members.setdefault(key, []).append(index)
        derived[key] = is_derived
    groups = []
    for key in sorted(members):
        indices = tuple(members[key])
        keys = tuple(sorted({instance_key(headers[i]) for i in indices}))
        groups.append(
            SeriesGroup(
                series_key=key,
                derived_identity=derived[key],
                indices=indices,
                instance_keys=keys,
                job_id=compute_job_id(key, keys),
                instance_set_sha256=instance_set_sha256(keys),
            )
        )
    return groups
