"""Geometry and rescale facts of classic single-frame and Enhanced multi-frame instances.

Enhanced CT (and other enhanced multi-frame objects) keep position, orientation, pixel
measures and rescale in per-frame / shared functional group sequences; classic images keep them
at the top level. :class:`FrameFacts` gives both the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset

from covidct_ingest.dicom_values import (
    ValueSource,
    first_item,
    get_value,
    number,
    to_float,
    to_floats,
)

Vec3 = tuple[float, float, float]
Orientation = tuple[float, float, float, float, float, float]
_ORIENTATION_TOLERANCE = 1e-4


@dataclass(frozen=True)
class FrameFacts:
    position: Vec3 | None
    orientation: Orientation | None
    pixel_spacing: tuple[float, float] | None
    slice_thickness: float | None
    rescale_slope: float
    rescale_intercept: float
    frame_positions: tuple[Vec3, ...] | None = None
    frame_rescale: tuple[tuple[float, float], ...] | None = None

    @classmethod
    def from_values(cls, source: ValueSource) -> FrameFacts:
        """Facts of a classic image from its top-level attributes."""
        slope = number(source, 0x00281053, "RescaleSlope")
        intercept = number(source, 0x00281052, "RescaleIntercept")
        return cls(
            position=_vec3(source.numbers(0x00200032, "ImagePositionPatient")),
            orientation=_orientation(source.numbers(0x00200037, "ImageOrientationPatient")),
            pixel_spacing=_spacing(source.numbers(0x00280030, "PixelSpacing")),
            slice_thickness=number(source, 0x00180050, "SliceThickness"),
            rescale_slope=1.0 if slope is None or slope == 0 else slope,
            rescale_intercept=0.0 if intercept is None else intercept,
        )


def _vec3(value: object) -> Vec3 | None:
    items = to_floats(value, 3)
    return (items[0], items[1], items[2]) if items else None


def _orientation(value: object) -> Orientation | None:
    items = to_floats(value, 6)
    if not items:
        return None
    return (items[0], items[1], items[2], items[3], items[4], items[5])


def _spacing(value: object) -> tuple[float, float] | None:
    items = to_floats(value, 2)
    if not items or items[0] <= 0 or items[1] <= 0:
        return None
    return (items[0], items[1])


def _group_value(
    frame: Dataset | None, shared: Dataset | None, sequence: str, keyword: str
) -> object:
    """``keyword`` from the frame's functional group ``sequence``, else the shared one."""
    for source in (frame, shared):
        item = first_item(source, sequence)
        if item is not None:
            value = get_value(item, keyword)
            if value is not None:
                return value
    return None


def enhanced_frame_facts(ds: Dataset) -> FrameFacts | None:
    """Facts of an Enhanced multi-frame object, or None for a classic image."""
    per_frame = get_value(ds, "PerFrameFunctionalGroupsSequence")
    if not per_frame:
        return None
    shared = first_item(ds, "SharedFunctionalGroupsSequence")
    positions: list[Vec3] = []
    rescale: list[tuple[float, float]] = []
    orientation: Orientation | None = None
    consistent = True
    for frame in per_frame:
        position = _vec3(
            _group_value(frame, shared, "PlanePositionSequence", "ImagePositionPatient")
        )
        frame_orientation = _orientation(
            _group_value(frame, shared, "PlaneOrientationSequence", "ImageOrientationPatient")
        )
        if position is None or frame_orientation is None:
            consistent = False
            break
        if orientation is None:
            orientation = frame_orientation
        elif max(abs(a - b) for a, b in zip(orientation, frame_orientation, strict=True)) > (
            _ORIENTATION_TOLERANCE
        ):
            consistent = False
        positions.append(position)
        slope = to_float(
            _group_value(frame, shared, "PixelValueTransformationSequence", "RescaleSlope")
        )
        intercept = to_float(
            _group_value(frame, shared, "PixelValueTransformationSequence", "RescaleIntercept")
        )
        rescale.append((slope if slope else 1.0, intercept if intercept is not None else 0.0))
    first = per_frame[0] if len(per_frame) else None
    spacing = _spacing(_group_value(first, shared, "PixelMeasuresSequence", "PixelSpacing"))
    thickness = to_float(_group_value(first, shared, "PixelMeasuresSequence", "SliceThickness"))
    if not consistent or not positions:
        # Geometry missing or varying per frame: report no geometry; assembly rejects it.
        return FrameFacts(None, None, spacing, thickness, 1.0, 0.0, frame_positions=())
    varies = len(set(rescale)) > 1
    return FrameFacts(
        position=positions[0],
        orientation=orientation,
        pixel_spacing=spacing,
        slice_thickness=thickness,
        rescale_slope=rescale[0][0],
        rescale_intercept=rescale[0][1],
        frame_positions=tuple(positions),
        frame_rescale=tuple(rescale) if varies else None,
    )
