"""Stable outcome codes of the ingest stage (UPPER_SNAKE, see docs/contracts.md).

Skip codes mean "this series is not something we convert" (not an error); reject codes are
raised as :class:`covidct_core.errors.PermanentError`; file codes describe single objects that
are not usable DICOM images.
"""

from __future__ import annotations

from typing import Final

# Series skipped by selection (not errors).
NOT_CT: Final = "NOT_CT"
LOCALIZER: Final = "LOCALIZER"
SECONDARY_CAPTURE: Final = "SECONDARY_CAPTURE"
DOSE_REPORT: Final = "DOSE_REPORT"
DERIVED_IMAGE: Final = "DERIVED_IMAGE"
NOT_AXIAL: Final = "NOT_AXIAL"
EXCLUDED_BY_RULE: Final = "EXCLUDED_BY_RULE"
NOT_AN_IMAGE: Final = "NOT_AN_IMAGE"

SKIP_CODES: Final = frozenset(
    {
        NOT_CT,
        LOCALIZER,
        SECONDARY_CAPTURE,
        DOSE_REPORT,
        DERIVED_IMAGE,
        NOT_AXIAL,
        EXCLUDED_BY_RULE,
        NOT_AN_IMAGE,
    }
)

# Series rejected by assembly or conversion (PermanentError codes).
DUPLICATE_POSITION: Final = "DUPLICATE_POSITION"
SLICE_GAP: Final = "SLICE_GAP"
VARIABLE_SLICE_SPACING: Final = "VARIABLE_SLICE_SPACING"
GANTRY_TILT: Final = "GANTRY_TILT"
TOO_FEW_SLICES: Final = "TOO_FEW_SLICES"
INCOMPLETE_SERIES: Final = "INCOMPLETE_SERIES"
INCONSISTENT_GEOMETRY: Final = "INCONSISTENT_GEOMETRY"
MISSING_GEOMETRY: Final = "MISSING_GEOMETRY"
MIXED_SERIES: Final = "MIXED_SERIES"
UNSUPPORTED_TRANSFER_SYNTAX: Final = "UNSUPPORTED_TRANSFER_SYNTAX"
UNSUPPORTED_PIXEL_DATA: Final = "UNSUPPORTED_PIXEL_DATA"
VOLUME_TOO_LARGE: Final = "VOLUME_TOO_LARGE"

# Single objects.
NOT_DICOM: Final = "NOT_DICOM"
CORRUPT_FILE: Final = "CORRUPT_FILE"
DICOMDIR: Final = "DICOMDIR"
MISSING_IDENTITY: Final = "MISSING_IDENTITY"
INVALID_CONFIG: Final = "INVALID_CONFIG"
ARCHIVE_TOO_LARGE: Final = "ARCHIVE_TOO_LARGE"
