"""Decide which series become jobs: eligible axial CT series, each with its own job.

A skipped series carries a reason code (``NOT_CT``, ``LOCALIZER``, ``SECONDARY_CAPTURE``,
``DOSE_REPORT``, ``DERIVED_IMAGE``, ``NOT_AXIAL``, ``EXCLUDED_BY_RULE``, ``NOT_AN_IMAGE``);
skipping is not an error.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from covidct_ingest import codes
from covidct_ingest.config import SelectionRules
from covidct_ingest.geometry import angle_from_axial_deg, is_valid_orientation
from covidct_ingest.headers import InstanceHeader

CT_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
        "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image Storage
        "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT Image Storage
    }
)
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
DOSE_SR_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.88.67",  # X-Ray Radiation Dose SR
        "1.2.840.10008.5.1.4.1.1.88.68",  # Radiopharmaceutical Radiation Dose SR
    }
)
_DOSE_DESCRIPTION = re.compile(
    r"dose\s*(report|info|summary|record|sr)|patient\s*protocol|exam\s*protocol", re.IGNORECASE
)
_LOCALIZER_TYPES = frozenset({"LOCALIZER", "SCOUT", "TOPOGRAM", "SURVIEW"})


@dataclass(frozen=True)
class SkipDecision:
    code: str
    reason: str


def effective_modality(header: InstanceHeader) -> str:
    """Modality, inferred from the SOP class when the attribute is missing."""
    if header.modality:
        return header.modality
    return "CT" if header.sop_class_uid in CT_SOP_CLASSES else ""


def _is_dose_report(headers: Sequence[InstanceHeader]) -> bool:
    """A dose SR, a series described as a dose/protocol page, or only DOSE_INFO images."""
    return (
        any(h.sop_class_uid in DOSE_SR_CLASSES for h in headers)
        or any(_DOSE_DESCRIPTION.search(h.series_description) for h in headers)
        or all("DOSE_INFO" in h.image_type for h in headers)
    )


def _image_type_skip(
    headers: Sequence[InstanceHeader], rules: SelectionRules
) -> SkipDecision | None:
    for header in headers:
        kinds = header.image_type
        found = _LOCALIZER_TYPES.intersection(kinds)
        if found:
            return SkipDecision(codes.LOCALIZER, f"ImageType contains {sorted(found)[0]}")
    for header in headers:
        kinds = header.image_type
        if rules.require_original and kinds and kinds[0] != "ORIGINAL":
            return SkipDecision(
                codes.DERIVED_IMAGE, f"ImageType is {'/'.join(kinds)}, not ORIGINAL"
            )
        if rules.require_primary and len(kinds) > 1 and kinds[1] != "PRIMARY":
            return SkipDecision(codes.DERIVED_IMAGE, f"ImageType is {'/'.join(kinds)}, not PRIMARY")
    return None


def _rule_skip(header: InstanceHeader, rules: SelectionRules) -> SkipDecision | None:
    description = header.series_description
    if rules.include_description and not re.search(rules.include_description, description):
        return SkipDecision(codes.EXCLUDED_BY_RULE, "SeriesDescription does not match include rule")
    if rules.exclude_description and re.search(rules.exclude_description, description):
        return SkipDecision(codes.EXCLUDED_BY_RULE, "SeriesDescription matches exclude rule")
    thickness = header.slice_thickness
    low, high = rules.min_slice_thickness_mm, rules.max_slice_thickness_mm
    if thickness is not None and low is not None and thickness < low:
        return SkipDecision(codes.EXCLUDED_BY_RULE, f"SliceThickness {thickness} mm < {low} mm")
    if thickness is not None and high is not None and thickness > high:
        return SkipDecision(codes.EXCLUDED_BY_RULE, f"SliceThickness {thickness} mm > {high} mm")
    return None


def select_series(headers: Sequence[InstanceHeader], rules: SelectionRules) -> SkipDecision | None:
    """None when the series is eligible, else why it is skipped."""
    if not headers:
        return SkipDecision(codes.NOT_AN_IMAGE, "no instances")
    first = headers[0]
    if _is_dose_report(headers):
        return SkipDecision(codes.DOSE_REPORT, "dose report / protocol page")
    if any(h.sop_class_uid.startswith(SECONDARY_CAPTURE_PREFIX) for h in headers):
        return SkipDecision(codes.SECONDARY_CAPTURE, "Secondary Capture SOP class")
    modalities = {effective_modality(h) for h in headers}
    wanted = set(rules.modalities)
    if not modalities <= wanted:
        found = ",".join(sorted(m or "unknown" for m in modalities - wanted))
        return SkipDecision(codes.NOT_CT, f"modality {found} not in {sorted(wanted)}")
    if not any(h.has_pixel_data for h in headers):
        return SkipDecision(codes.NOT_AN_IMAGE, "no pixel data")
    decision = _image_type_skip(headers, rules)
    if decision is not None:
        return decision
    orientation = first.image_orientation
    limit = rules.max_axial_deviation_deg
    if limit is not None and orientation is not None and is_valid_orientation(orientation):
        angle = angle_from_axial_deg(orientation)
        if angle > limit:
            return SkipDecision(
                codes.NOT_AXIAL, f"slice normal is {angle:.1f} deg from the z axis (> {limit})"
            )
    return _rule_skip(first, rules)
