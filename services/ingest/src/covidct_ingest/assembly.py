"""Order the slices of one series in space and decide how (or whether) to build a volume.

Slices are sorted by their position projected on the slice normal (row x column cosine), never
by InstanceNumber or file name. The plan records every decision: exact duplicates dropped,
gantry tilt corrected by an in-plane shear onto an orthogonal grid (dcm2niix style), variable
spacing resampled to a uniform one, or the series rejected with a PermanentError code
(``DUPLICATE_POSITION``, ``SLICE_GAP``, ``VARIABLE_SLICE_SPACING``, ``GANTRY_TILT``,
``TOO_FEW_SLICES``, ``INCOMPLETE_SERIES``, ``INCONSISTENT_GEOMETRY``, ``MISSING_GEOMETRY``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from covidct_core.errors import PermanentError
from covidct_ingest import codes
from covidct_ingest.config import AssemblyRules
from covidct_ingest.geometry import angle_between_deg, is_valid_orientation, plane_axes
from covidct_ingest.headers import InstanceHeader
from covidct_ingest.spacing import SpacingAnalysis, analyse_spacing, resample_targets

Vec3 = tuple[float, float, float]
_MAX_LISTED = 20


@dataclass(frozen=True)
class SliceRef:
    """One 2D slice: frame ``frame`` of instance ``instance`` (index into the series)."""

    instance: int
    frame: int
    position: Vec3
    slope: float
    intercept: float


@dataclass(frozen=True)
class Decision:
    """Something assembly noticed and what it did about it (for the QA report)."""

    code: str
    action: str  # "resampled", "deduplicated", "noted"
    detail: str


@dataclass(frozen=True)
class AssemblyPlan:
    slices: tuple[SliceRef, ...]  # sorted along the normal, exact duplicates removed
    distances: tuple[float, ...]  # of each slice along the normal, relative to the first
    rows: int
    columns: int
    orientation: tuple[float, ...]
    direction: tuple[float, ...]  # 9 floats, row-major (ITK)
    origin: Vec3
    spacing: Vec3  # (x, y, z) of the output grid
    output_shape: tuple[int, int, int]  # (z, y, x) of the output grid
    in_plane_shifts: tuple[tuple[float, float], ...] | None  # (x, y) pixels per slice, >= 0
    target_distances: tuple[float, ...] | None  # output slice distances when resampling in z
    tilt_deg: float
    spacing_analysis: SpacingAnalysis | None
    decisions: tuple[Decision, ...]
    deduplicated: tuple[str, ...]

    @property
    def needs_resampling(self) -> bool:
        return self.in_plane_shifts is not None or self.target_distances is not None


def _reject(code: str, reason: str, inputs: Sequence[str] = ()) -> PermanentError:
    return PermanentError(code, reason, list(inputs)[:_MAX_LISTED])


def _expand_slices(headers: Sequence[InstanceHeader], keys: Sequence[str]) -> list[SliceRef]:
    slices: list[SliceRef] = []
    missing: list[str] = []
    for index, header in enumerate(headers):
        if header.frame_positions is not None:
            if not header.frame_positions:
                missing.append(keys[index])
            for frame, position in enumerate(header.frame_positions):
                slope, intercept = (
                    header.frame_rescale[frame]
                    if header.frame_rescale
                    else (header.rescale_slope, header.rescale_intercept)
                )
                slices.append(SliceRef(index, frame, position, slope, intercept))
        elif header.image_position is None:
            missing.append(keys[index])
        else:
            slope, intercept = header.rescale_slope, header.rescale_intercept
            for frame in range(max(1, header.number_of_frames)):
                slices.append(SliceRef(index, frame, header.image_position, slope, intercept))
    if missing:
        raise _reject(codes.MISSING_GEOMETRY, "instances without ImagePositionPatient", missing)
    return slices


def _plane(header: InstanceHeader, key: str) -> tuple[tuple[float, ...], tuple[float, float]]:
    """(orientation, pixel spacing) of an instance, or MISSING_GEOMETRY."""
    if (
        header.image_orientation is None
        or header.pixel_spacing is None
        or not header.rows
        or not header.columns
    ):
        raise _reject(
            codes.MISSING_GEOMETRY, "instance without orientation, pixel spacing or size", [key]
        )
    return header.image_orientation, header.pixel_spacing


def _check_consistent(
    headers: Sequence[InstanceHeader], keys: Sequence[str]
) -> tuple[tuple[float, ...], tuple[float, float]]:
    """The shared orientation and pixel spacing; rejects series whose planes differ."""
    first_orientation, first_spacing = _plane(headers[0], keys[0])
    if not is_valid_orientation(first_orientation):
        raise _reject(codes.MISSING_GEOMETRY, "ImageOrientationPatient is not orthonormal")
    orientation = np.asarray(first_orientation)
    spacing = np.asarray(first_spacing)
    first = headers[0]
    for key, header in zip(keys, headers, strict=True):
        this_orientation, this_spacing = _plane(header, key)
        if (header.rows, header.columns) != (first.rows, first.columns):
            raise _reject(codes.INCONSISTENT_GEOMETRY, "instances differ in Rows/Columns", [key])
        if np.max(np.abs(np.asarray(this_orientation) - orientation)) > 1e-3:
            raise _reject(codes.INCONSISTENT_GEOMETRY, "instances differ in orientation", [key])
        if np.max(np.abs(np.asarray(this_spacing) / spacing - 1)) > 1e-3:
            raise _reject(codes.INCONSISTENT_GEOMETRY, "instances differ in PixelSpacing", [key])
    return first_orientation, first_spacing


def _deduplicate(
    slices: list[SliceRef],
    distances: np.ndarray,
    keys: Sequence[str],
    rules: AssemblyRules,
    content_hash: Callable[[int], str],
) -> tuple[list[int], list[str]]:
    """Indices (into sorted slices) to keep, and instance keys dropped as exact duplicates."""
    keep: list[int] = []
    dropped: list[str] = []
    start = 0
    while start < len(slices):
        end = start + 1
        while (
            end < len(slices) and distances[end] - distances[start] <= rules.position_tolerance_mm
        ):
            end += 1
        cluster = list(range(start, end))
        if len(cluster) > 1:
            members = [slices[i] for i in cluster]
            multi = len({(m.instance, m.frame) for m in members}) != len(
                {m.instance for m in members}
            )
            hashes = {content_hash(m.instance) for m in members}
            if multi or len(hashes) > 1:
                uids = sorted({keys[m.instance] for m in members})
                raise _reject(
                    codes.DUPLICATE_POSITION,
                    f"{len(members)} slices with different content at {distances[start]:.3f} mm "
                    f"along the slice normal: {', '.join(uids[:_MAX_LISTED])}",
                    uids,
                )
            dropped.extend(keys[m.instance] for m in members[1:])
        keep.append(cluster[0])
        start = end
    return keep, dropped


def _instance_checks(
    headers: Sequence[InstanceHeader],
    slices: Sequence[SliceRef],
    keys: Sequence[str],
    rules: AssemblyRules,
) -> None:
    single_frame = all(h.frame_positions is None and h.number_of_frames <= 1 for h in headers)
    used = sorted({s.instance for s in slices})
    numbers = [headers[i].instance_number for i in used]
    if rules.check_instance_numbers and single_frame and all(n is not None for n in numbers):
        values = sorted(n for n in numbers if n is not None)
        if len(set(values)) == len(values) and values[-1] - values[0] + 1 != len(values):
            missing = sorted(set(range(values[0], values[-1] + 1)) - set(values))
            listed = ", ".join(str(n) for n in missing[:_MAX_LISTED])
            raise _reject(
                codes.INCOMPLETE_SERIES,
                f"InstanceNumber sequence has {len(missing)} hole(s): {listed}",
                [keys[i] for i in used],
            )
    expected = {headers[i].images_in_acquisition for i in used}
    if rules.check_images_in_acquisition and single_frame and len(expected) == 1:
        count = expected.pop()
        if count is not None and len(used) < count:
            raise _reject(
                codes.INCOMPLETE_SERIES,
                f"{len(used)} instances but ImagesInAcquisition is {count}",
            )


def assemble_series(
    headers: Sequence[InstanceHeader],
    keys: Sequence[str],
    rules: AssemblyRules,
    content_hash: Callable[[int], str],
) -> AssemblyPlan:
    """Plan the volume of one series; ``keys[i]`` names ``headers[i]`` in messages.

    ``content_hash(i)`` returns the sha256 of instance ``i``; it is called only for slices
    that share a position (to tell exact duplicates from conflicts).
    """
    if not headers:
        raise _reject(codes.TOO_FEW_SLICES, "no instances")
    orientation, pixel_spacing = _check_consistent(headers, keys)
    first = headers[0]
    row, col, normal = plane_axes(orientation)
    dy, dx = pixel_spacing  # DICOM: (row spacing, column spacing)
    slices = _expand_slices(headers, keys)
    positions = np.asarray([s.position for s in slices], dtype=np.float64)
    distances = positions @ normal
    order = sorted(range(len(slices)), key=lambda i: (distances[i], keys[slices[i].instance]))
    slices = [slices[i] for i in order]
    distances = distances[order]
    positions = positions[order]
    keep, dropped = _deduplicate(slices, distances, keys, rules, content_hash)
    slices = [slices[i] for i in keep]
    distances, positions = distances[keep], positions[keep]
    decisions: list[Decision] = []
    if dropped:
        decisions.append(
            Decision("DUPLICATE_INSTANCE", "deduplicated", f"{len(dropped)} identical slice(s)")
        )
    if len(slices) < rules.min_slices:
        raise _reject(
            codes.TOO_FEW_SLICES,
            f"{len(slices)} distinct slice(s), at least {rules.min_slices} needed",
            sorted({keys[s.instance] for s in slices}),
        )
    relative = distances - distances[0]
    offsets = (positions - positions[0]) - np.outer(relative, normal)
    along_row, along_col = offsets @ row, offsets @ col
    max_offset_px = float(max(np.max(np.abs(along_row)) / dx, np.max(np.abs(along_col)) / dy))
    tilt_deg = 0.0
    if len(slices) > 1 and relative[-1] > 0:
        tilt_deg = angle_between_deg(positions[-1] - positions[0], normal)
    origin = positions[0]
    shifts: tuple[tuple[float, float], ...] | None = None
    extra_x = extra_y = 0
    tag_tilt = first.gantry_detector_tilt
    if max_offset_px > rules.tilt_tolerance_px:
        detail = f"slices sheared by {tilt_deg:.2f} deg (GantryDetectorTilt {tag_tilt})"
        if rules.gantry_tilt == "reject":
            raise _reject(codes.GANTRY_TILT, detail)
        shift_x = (along_row - along_row.min()) / dx
        shift_y = (along_col - along_col.min()) / dy
        shifts = tuple((float(x), float(y)) for x, y in zip(shift_x, shift_y, strict=True))
        extra_x = math.ceil(float(shift_x.max()) - 1e-6)
        extra_y = math.ceil(float(shift_y.max()) - 1e-6)
        origin = positions[0] + along_row.min() * row + along_col.min() * col
        decisions.append(
            Decision(codes.GANTRY_TILT, "resampled", detail + "; shifted onto an orthogonal grid")
        )
    elif tag_tilt:
        decisions.append(
            Decision(
                codes.GANTRY_TILT, "noted", f"GantryDetectorTilt {tag_tilt} but slices orthogonal"
            )
        )
    analysis: SpacingAnalysis | None = None
    targets: tuple[float, ...] | None = None
    if len(slices) > 1:
        analysis = analyse_spacing(relative, rules)
        if analysis.gaps:
            missing = ", ".join(f"{d + distances[0]:.2f}" for d in analysis.missing[:_MAX_LISTED])
            raise _reject(
                codes.SLICE_GAP,
                f"{len(analysis.missing)} missing slice(s) at {missing} mm along the slice "
                f"normal (typical spacing {analysis.typical:.3f} mm)",
                sorted({keys[s.instance] for s in slices})[:_MAX_LISTED],
            )
        if not analysis.uniform:
            detail = f"slice spacing varies {analysis.minimum:.3f}..{analysis.maximum:.3f} mm"
            if rules.variable_spacing == "reject":
                raise _reject(codes.VARIABLE_SLICE_SPACING, detail)
            targets, z_spacing = resample_targets(relative, rules.resample_spacing)
            decisions.append(
                Decision(
                    codes.VARIABLE_SLICE_SPACING,
                    "resampled",
                    f"{detail}; linearly resampled to {z_spacing:.4f} mm ({len(targets)} slices)",
                )
            )
        else:
            z_spacing = float(relative[-1] / (len(slices) - 1))
    else:
        z_spacing = float(first.slice_thickness or 1.0)
    _instance_checks(headers, slices, keys, rules)
    n_out = len(targets) if targets is not None else len(slices)
    shape = (n_out, first.rows + extra_y, first.columns + extra_x)
    if shape[0] * shape[1] * shape[2] > rules.max_output_voxels:
        raise _reject(codes.VOLUME_TOO_LARGE, f"output grid {shape} is too large")
    direction = np.stack([row, col, normal], axis=1)
    return AssemblyPlan(
        slices=tuple(slices),
        distances=tuple(float(d) for d in relative),
        rows=first.rows,
        columns=first.columns,
        orientation=tuple(orientation),
        direction=tuple(float(v) for v in direction.ravel()),
        origin=(float(origin[0]), float(origin[1]), float(origin[2])),
        spacing=(float(dx), float(dy), z_spacing),
        output_shape=shape,
        in_plane_shifts=shifts,
        target_distances=targets,
        tilt_deg=tilt_deg if shifts is not None else 0.0,
        spacing_analysis=analysis,
        decisions=tuple(decisions),
        deduplicated=tuple(dropped),
    )
