"""Hand-made instance headers for the pure-logic tests (assembly, grouping, selection)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from covidct_ingest.headers import InstanceHeader

BASE = InstanceHeader(
    sop_instance_uid="",
    sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
    series_instance_uid="1.2.3.4",
    study_instance_uid="1.2.3",
    frame_of_reference_uid="1.2.3.9",
    modality="CT",
    image_type=("ORIGINAL", "PRIMARY", "AXIAL"),
    instance_number=None,
    series_number=2,
    image_position=(0.0, 0.0, 0.0),
    image_orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    pixel_spacing=(0.5, 0.6),
    slice_thickness=2.0,
    rows=8,
    columns=10,
    bits_allocated=16,
    bits_stored=12,
    pixel_representation=0,
    samples_per_pixel=1,
    photometric_interpretation="MONOCHROME2",
    rescale_slope=1.0,
    rescale_intercept=-1024.0,
    pixel_padding_value=None,
    pixel_padding_range_limit=None,
    transfer_syntax_uid="1.2.840.10008.1.2.1",
    number_of_frames=1,
    images_in_acquisition=None,
    gantry_detector_tilt=None,
    series_description="Chest",
    convolution_kernel="B40f",
    manufacturer="Fake",
    content_sha256=None,
    size_bytes=1000,
    has_pixel_data=True,
    pixel_data_offset=100,
    pixel_data_length=160,
)


def header(**changes: Any) -> InstanceHeader:
    return dataclasses.replace(BASE, **changes)


def stack(
    zs: Sequence[float],
    *,
    normal_offsets: Sequence[tuple[float, float]] | None = None,
    **changes: Any,
) -> list[InstanceHeader]:
    """Axial slices at ``zs`` (instance numbers follow z order), optionally shifted in x/y."""
    items = []
    for index, z in enumerate(zs):
        dx, dy = normal_offsets[index] if normal_offsets else (0.0, 0.0)
        items.append(
            header(
                sop_instance_uid=f"1.2.3.4.{index + 1}",
                instance_number=index + 1,
                image_position=(dx, dy, float(z)),
                **changes,
            )
        )
    return items


def keys_of(headers: Sequence[InstanceHeader]) -> list[str]:
    return [h.sop_instance_uid for h in headers]
