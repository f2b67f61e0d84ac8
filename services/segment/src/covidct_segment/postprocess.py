"""Post-processing of binary lung masks: components, left/right split, hole filling."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage

Mask = npt.NDArray[np.bool_]
FACE = ndimage.generate_binary_structure(3, 1)
SPLIT_GRID_MM = 4.0


def largest_components(mask: Mask, max_count: int = 2, min_ratio: float = 0.12) -> list[Mask]:
    """The largest component, plus the next ones while each is >= ``min_ratio`` of it."""
    labels, count = ndimage.label(mask, structure=FACE)
    if count == 0:
        return []
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    order = np.argsort(sizes)[::-1][:max_count]
    largest = int(sizes[order[0]])
    return [labels == i for i in order if sizes[i] > 0 and sizes[i] >= min_ratio * largest]


def clean_lung_mask(
    mask: npt.NDArray[np.generic],
    spacing_zyx: tuple[float, float, float],
    min_ratio: float = 0.12,
) -> npt.NDArray[np.uint8]:
    """Keep the one or two largest components (lungs) and fill their holes, lung by lung."""
    parts = largest_components(np.asarray(mask) > 0, 2, min_ratio)
    if len(parts) == 1:
        parts = split_joined(parts[0], spacing_zyx, min_ratio)
    out = np.zeros(np.shape(mask), dtype=np.uint8)
    for part in parts:
        out[fill_holes(part)] = 1
    return out


IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
IN_PLANE[1] = ndimage.generate_binary_structure(2, 1)


def fill_holes_per_slice(mask: Mask) -> Mask:
    """``binary_fill_holes`` on every axial slice, in one labelling of the background:
    background regions (4-connected within their slice) that do not touch the slice's
    border are holes."""
    background = ~np.asarray(mask, dtype=bool)
    labels, count = ndimage.label(background, structure=IN_PLANE)
    if count == 0:
        return np.asarray(mask, dtype=bool).copy()
    outside = np.zeros(count + 1, dtype=bool)
    for edge in (labels[:, 0, :], labels[:, -1, :], labels[:, :, 0], labels[:, :, -1]):
        outside[np.unique(edge)] = True
    outside[0] = False
    filled: Mask = ~outside[labels]
    return filled


def split_joined(lung: Mask, spacing_zyx: tuple[float, float, float], ratio: float) -> list[Mask]:
    """Split one component holding both lungs by eroding (on a ~4 mm grid) until two big
    parts appear; every voxel then goes to the nearer part."""
    steps = tuple(max(1, round(SPLIT_GRID_MM / s)) for s in spacing_zyx)
    coarse = lung[:: steps[0], :: steps[1], :: steps[2]]
    total = float(coarse.sum())
    eroded = coarse
    for _ in range(6):
        eroded = ndimage.binary_erosion(eroded, structure=FACE)
        labels, count = ndimage.label(eroded, structure=FACE)
        if count < 2:
            continue
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        first, second = np.argsort(sizes)[::-1][:2]
        if sizes[second] < ratio * 0.5 * total:
            continue
        seeds = np.where(labels == first, 1, 0) + np.where(labels == second, 2, 0)
        _, nearest = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
        owner = _repeat_to(seeds[tuple(nearest)].astype(np.uint8), steps, lung.shape)
        return [lung & (owner == 1), lung & (owner == 2)]
    return [lung]


def _repeat_to(
    coarse: npt.NDArray[np.uint8], steps: tuple[int, ...], shape: tuple[int, ...]
) -> npt.NDArray[np.uint8]:
    """Nearest-neighbour upsampling of a strided subsample back to ``shape``."""
    out = coarse
    for axis, (step, n) in enumerate(zip(steps, shape, strict=True)):
        out = np.repeat(out, step, axis=axis).take(np.arange(n), axis=axis)
    return out


def bounding_box(mask: Mask) -> tuple[slice, ...] | None:
    box = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.nonzero(mask.any(axis=others))[0]
        if hits.size == 0:
            return None
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def fill_holes(lung: Mask) -> Mask:
    found = bounding_box(lung)
    if found is None:
        return lung
    out = np.zeros_like(lung)
    box = fill_holes_per_slice(lung[found])
    out[found] = ndimage.binary_fill_holes(box)
    return out
