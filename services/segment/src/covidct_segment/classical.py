"""Classical (threshold + connected components) lung segmentation on any spacing.

Steps: body mask (largest tissue component, holes filled per slice); air inside the body;
trachea and main bronchi found from a seed in the upper mediastinum and removed by
explosion-controlled region growing; the one or two largest lung-like components kept;
joined lungs split by erosion; holes filled per slice and in 3D, per lung.

Used as the silver-standard teacher for training, as a QA cross-check of the model at
inference, and as an explicit segmenter (``segmenter="classical"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog
from scipy import ndimage

from covidct_core.errors import PermanentError
from covidct_core.volume_io import Volume
from covidct_segment.postprocess import (
    bounding_box,
    fill_holes,
    fill_holes_per_slice,
    split_joined,
)

log = structlog.get_logger()

Mask = npt.NDArray[np.bool_]
RIGHT_LUNG = 1
LEFT_LUNG = 2
_FACE = ndimage.generate_binary_structure(3, 1)


@dataclass(frozen=True)
class ClassicalParams:
    """Thresholds in HU, sizes in mm / mL."""

    air_threshold_hu: float = -400.0
    body_threshold_hu: float = -500.0
    airway_start_hu: float = -990.0
    airway_stop_hu: float = -880.0
    airway_step_hu: float = 10.0
    max_airway_ml: float = 180.0
    min_lung_ml: float = 30.0
    second_lung_ratio: float = 0.12
    max_air_median_hu: float = -975.0
    airway_margin_mm: float = 2.0


@dataclass(frozen=True)
class ClassicalResult:
    """A lung mask (z, y, x) plus what the algorithm found."""

    labels: npt.NDArray[np.uint8]
    lungs_found: int
    airway_ml: float
    lung_ml: float

    @property
    def mask(self) -> npt.NDArray[np.uint8]:
        return (self.labels > 0).astype(np.uint8)


def segment_lungs_classical(
    volume: Volume, params: ClassicalParams | None = None
) -> ClassicalResult:
    """Segment the lungs of a HU volume on its own grid; raises NO_LUNG_FOUND."""
    p = params or ClassicalParams()
    spacing_zyx = (volume.spacing[2], volume.spacing[1], volume.spacing[0])
    superior_last = volume.direction[8] >= 0
    left_last = volume.direction[0] >= 0
    return lung_labels(volume.array, spacing_zyx, p, superior_last, left_last)


def lung_labels(
    hu: npt.NDArray[Any],
    spacing_zyx: tuple[float, float, float],
    params: ClassicalParams,
    superior_last: bool = True,
    left_last: bool = True,
    body: Mask | None = None,
) -> ClassicalResult:
    """The algorithm on a raw (z, y, x) array; label 1 = right lung, 2 = left lung. ``body``
    is :func:`body_mask` of ``hu`` where the caller already has it."""
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    if body is None:
        body = body_mask(hu, params.body_threshold_hu)
    air = (hu < params.air_threshold_hu) & body
    airway = find_airway(hu, air, body, spacing_zyx, params, superior_last)
    airway_ml = float(airway.sum()) * voxel_ml
    if airway.any():
        margin = _ball(params.airway_margin_mm, spacing_zyx)
        air &= ~dilate_in_box(airway, margin)
    lungs = _keep_lungs(hu, air, voxel_ml, params)
    if not lungs:
        raise PermanentError("NO_LUNG_FOUND", "no lung-like air region inside the body")
    if len(lungs) == 1:
        lungs = split_joined(lungs[0], spacing_zyx, params.second_lung_ratio)
    labels = np.zeros(hu.shape, dtype=np.uint8)
    ordered = _order_right_left(lungs, left_last)
    for label, lung in ordered:
        labels[fill_holes(lung) & (labels == 0)] = label
    lung_ml = float(np.count_nonzero(labels)) * voxel_ml
    log.debug("classical_segmented", lungs=len(lungs), lung_ml=lung_ml, airway_ml=airway_ml)
    return ClassicalResult(labels, len(lungs), airway_ml, lung_ml)


def body_mask(hu: npt.NDArray[Any], threshold_hu: float) -> Mask:
    """Largest connected tissue component, holes filled slice by slice."""
    tissue = hu > threshold_hu
    labels, count = ndimage.label(tissue, structure=_FACE)
    if count == 0:
        return np.zeros(hu.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    body: Mask = labels == int(np.argmax(sizes))
    return fill_holes_per_slice(body)


def find_airway(
    hu: npt.NDArray[Any],
    air: Mask,
    body: Mask,
    spacing_zyx: tuple[float, float, float],
    params: ClassicalParams,
    superior_last: bool,
) -> Mask:
    """Trachea + main bronchi by region growing from a seed found in the upper slices."""
    seed = _trachea_seed(hu, air, body, spacing_zyx, superior_last)
    empty = np.zeros(hu.shape, dtype=bool)
    if seed is None:
        return empty
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    crop = _central_columns(body, seed, 0.5)
    air_crop, hu_crop = air[crop], hu[crop]
    local_seed = (seed[0], seed[1], seed[2] - crop[2].start)
    best: Mask | None = None  # grown inside the crop; nothing outside it is ever airway
    previous_ml = 0.0
    threshold = params.airway_start_hu
    while threshold <= params.airway_stop_hu:
        grown = _component_at(air_crop & (hu_crop < threshold), local_seed)
        grown_ml = float(np.count_nonzero(grown)) * voxel_ml
        exploded = grown_ml > params.max_airway_ml or (
            previous_ml > 5.0 and grown_ml > 2.0 * previous_ml
        )
        if exploded:
            break
        best, previous_ml = grown, grown_ml
        threshold += params.airway_step_hu
    if best is not None:
        empty[crop] = best
    return empty


def _central_columns(
    body: Mask, seed: tuple[int, int, int], fraction: float
) -> tuple[slice, slice, slice]:
    """All rows and slices, and the x columns within ``fraction`` of the body half-width
    around the seed (where the trachea and main bronchi run)."""
    body_x = np.nonzero(body.any(axis=(0, 1)))[0]
    half = fraction * 0.5 * float(body_x[-1] - body_x[0]) if body_x.size else body.shape[2]
    lo = max(0, int(seed[2] - half))
    hi = min(body.shape[2], int(seed[2] + half) + 1)
    return slice(None), slice(None), slice(lo, hi)


def _component_at(mask: Mask, seed: tuple[int, int, int]) -> Mask:
    if not mask[seed]:
        return np.zeros(mask.shape, dtype=bool)
    labels, _ = ndimage.label(mask, structure=_FACE)
    found: Mask = labels == labels[seed]
    return found


def _trachea_seed(
    hu: npt.NDArray[Any],
    air: Mask,
    body: Mask,
    spacing_zyx: tuple[float, float, float],
    superior_last: bool,
) -> tuple[int, int, int] | None:
    """A voxel of a small, round, dark, central air blob in the uppermost slices with air."""
    area_px = spacing_zyx[1] * spacing_zyx[2]
    z_with_air = np.nonzero(air.reshape(air.shape[0], -1).any(axis=1))[0]
    if z_with_air.size == 0:
        return None
    order = z_with_air[::-1] if superior_last else z_with_air
    span = max(1, int(order.size * 0.4))
    for z in order[:span]:
        body_x = np.nonzero(body[z].any(axis=0))[0]
        if body_x.size == 0:
            continue
        center_x = 0.5 * (body_x[0] + body_x[-1])
        half_width = 0.5 * (body_x[-1] - body_x[0])
        blobs, _ = ndimage.label(air[z])
        for index, found in enumerate(ndimage.find_objects(blobs), start=1):
            if found is None:
                continue
            blob = blobs[found] == index
            area_cm2 = float(blob.sum()) * area_px / 100.0
            if not 0.7 <= area_cm2 <= 7.0 or blob.sum() < 0.5 * blob.size:
                continue
            ys, xs = np.nonzero(blob)
            cx = found[1].start + xs.mean()
            if abs(cx - center_x) > 0.18 * half_width:
                continue
            values = hu[z][found][blob]
            if float(np.median(values)) > -850:
                continue
            k = int(np.argmin(values))
            return int(z), int(found[0].start + ys[k]), int(found[1].start + xs[k])
    return None


def _keep_lungs(
    hu: npt.NDArray[Any], air: Mask, voxel_ml: float, params: ClassicalParams
) -> list[Mask]:
    labels, count = ndimage.label(air, structure=_FACE)
    if count == 0:
        return []
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    kept: list[Mask] = []
    for index in np.argsort(sizes)[::-1][:6]:
        if sizes[index] * voxel_ml < params.min_lung_ml:
            break
        component: Mask = labels == index
        if float(np.median(hu[component])) < params.max_air_median_hu:
            continue
        if kept and sizes[index] < params.second_lung_ratio * float(kept[0].sum()):
            break
        kept.append(component)
        if len(kept) == 2:
            break
    return kept


def _order_right_left(lungs: list[Mask], left_last: bool) -> list[tuple[int, Mask]]:
    """Label by patient side: +x in LPS is the patient's left."""
    if len(lungs) == 1:
        return [(RIGHT_LUNG, lungs[0])]
    centers = [float(np.nonzero(lung.any(axis=(0, 1)))[0].mean()) for lung in lungs]
    low_x_first = sorted(zip(centers, range(len(lungs)), strict=True))
    first, second = (lungs[i] for _, i in low_x_first)
    if left_last:
        return [(RIGHT_LUNG, first), (LEFT_LUNG, second)]
    return [(LEFT_LUNG, first), (RIGHT_LUNG, second)]


def dilate_in_box(mask: Mask, structure: Mask) -> Mask:
    """``ndimage.binary_dilation(mask, structure)`` computed only inside the mask's bounding
    box grown by the structure's size (the same result: nothing farther can be reached)."""
    box = bounding_box(mask)
    out = np.zeros(mask.shape, dtype=bool)
    if box is None:
        return out
    region = tuple(
        slice(max(0, part.start - size), min(length, part.stop + size))
        for part, size, length in zip(box, structure.shape, mask.shape, strict=True)
    )
    out[region] = ndimage.binary_dilation(mask[region], structure=structure)
    return out


def _ball(radius_mm: float, spacing_zyx: tuple[float, float, float]) -> Mask:
    radii = [max(0, int(radius_mm // s)) for s in spacing_zyx]
    grids = np.ogrid[tuple(slice(-r, r + 1) for r in radii)]
    dist = sum((g * s / max(radius_mm, 1e-6)) ** 2 for g, s in zip(grids, spacing_zyx, strict=True))
    ball: Mask = np.asarray(dist <= 1.0)
    return ball


def dice(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> float:
    """Dice overlap of two binary masks on the same grid (1.0 when both are empty)."""
    a_bool = np.asarray(a) > 0
    b_bool = np.asarray(b) > 0
    total = int(a_bool.sum()) + int(b_bool.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(a_bool & b_bool)) / total
