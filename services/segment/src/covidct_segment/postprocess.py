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
    """Keep the one or two largest components (lungs) and fill their holes, lung by lung.

    Works inside the mask's bounding box, aligned to the split grid so that the result is
    the same as on the whole array."""
    binary = np.asarray(mask) > 0
    out = np.zeros(binary.shape, dtype=np.uint8)
    box = bounding_box(binary, split_steps(spacing_zyx))
    if box is None:
        return out
    parts = largest_components(binary[box], 2, min_ratio)
    if len(parts) == 1:
        parts = split_joined(parts[0], spacing_zyx, min_ratio)
    region = out[box]
    for part in parts:
        region[fill_holes(part)] = 1
    return out


def grid_steps(spacing_zyx: tuple[float, float, float], grid_mm: float) -> tuple[int, int, int]:
    """Whole-voxel strides (at least 1) that make a grid of about ``grid_mm`` from ``spacing``."""
    steps = tuple(max(1, round(grid_mm / s)) for s in spacing_zyx)
    return steps[0], steps[1], steps[2]


def split_steps(spacing_zyx: tuple[float, float, float]) -> tuple[int, int, int]:
    """Voxel strides of the ~4 mm grid that :func:`split_joined` erodes on."""
    return grid_steps(spacing_zyx, SPLIT_GRID_MM)


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
    parts appear; every voxel then goes to the nearer part. Works inside the lung's bounding
    box, aligned to the grid's strides (the same result as on the whole array)."""
    steps = split_steps(spacing_zyx)
    box = bounding_box(lung, steps)
    if box is None:
        return [lung]
    owner = _split_owner(lung[box], steps, ratio)
    if owner is None:
        return [lung]
    parts = []
    for side in (1, 2):
        part = np.zeros_like(lung)
        part[box] = lung[box] & (owner == side)
        parts.append(part)
    return parts


def _split_owner(
    lung: Mask, steps: tuple[int, int, int], ratio: float
) -> npt.NDArray[np.uint8] | None:
    """1/2 for the side each voxel of ``lung`` is nearer to, or None if no split is found."""
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
        return repeat_to(seeds[tuple(nearest)].astype(np.uint8), steps, lung.shape)
    return None


def repeat_to(
    coarse: npt.NDArray[np.uint8], steps: tuple[int, ...], shape: tuple[int, ...]
) -> npt.NDArray[np.uint8]:
    """Nearest-neighbour upsampling of a strided subsample (or block means) back to
    ``shape``: each coarse voxel repeated ``steps`` times per axis, cut to ``shape``."""
    out = coarse
    for axis, (step, n) in enumerate(zip(steps, shape, strict=True)):
        out = np.repeat(out, step, axis=axis).take(np.arange(n), axis=axis)
    return out


def bounding_box(mask: Mask, align: tuple[int, ...] | None = None) -> tuple[slice, ...] | None:
    """The smallest box holding every set voxel (None if there is none); with ``align``, each
    start is rounded down to a multiple of its stride."""
    box = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.nonzero(mask.any(axis=others))[0]
        if hits.size == 0:
            return None
        start = int(hits[0]) if align is None else int(hits[0]) // align[axis] * align[axis]
        box.append(slice(start, int(hits[-1]) + 1))
    return tuple(box)


def fill_holes(lung: Mask) -> Mask:
    """Holes filled on every axial slice, which also fills every hole in 3D: a voxel of a 3D
    hole (background not face-connected to the border) lies in an in-plane background region
    that cannot reach the slice's border either, and after the per-slice fill no slice has
    such a region left, so ``binary_fill_holes`` would change nothing more."""
    found = bounding_box(lung)
    if found is None:
        return lung
    out = np.zeros_like(lung)
    out[found] = fill_holes_per_slice(lung[found])
    return out
