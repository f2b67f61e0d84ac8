"""Geometry and intensity preprocessing shared by inference and training.

A volume is first viewed in a canonical orientation (array axes z, y, x pointing to patient
superior, posterior and left, i.e. LPS), then resampled to the model spacing with trilinear
interpolation and windowed to [0, 1]. :class:`ModelGrid` remembers how to map a mask on the
model grid back onto exactly the input grid (nearest neighbour).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from covidct_core.volume_io import Volume
from covidct_segment.postprocess import bounding_box


@dataclass(frozen=True)
class Orientation:
    """Transpose then flips that turn a (z, y, x) array into canonical LPS order."""

    axes: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    spacing_zyx: tuple[float, float, float]


@dataclass(frozen=True)
class ModelGrid:
    """How an input array maps onto the model grid."""

    orientation: Orientation
    canonical_shape: tuple[int, int, int]
    shape: tuple[int, int, int]
    spacing_zyx: tuple[float, float, float]


@dataclass(frozen=True)
class Preprocessing:
    """Model input contract: target spacing (x, y, z mm) and HU window mapped to [0, 1]."""

    spacing: tuple[float, float, float] = (2.0, 2.0, 2.0)
    hu_min: float = -1000.0
    hu_max: float = 500.0


def orientation_of(volume: Volume) -> Orientation:
    """The canonical view of ``volume``: nearest axis permutation and sign flips."""
    matrix = volume.direction_matrix()
    axes = [0, 0, 0]
    flips = [False, False, False]
    spacing = [0.0, 0.0, 0.0]
    used: set[int] = set()
    for index_axis in range(3):
        column = np.abs(matrix[:, index_axis])
        for physical in np.argsort(column)[::-1]:
            if int(physical) not in used:
                break
        physical = int(physical)
        used.add(physical)
        axes[2 - physical] = 2 - index_axis
        flips[2 - physical] = bool(matrix[physical, index_axis] < 0)
        spacing[2 - physical] = float(volume.spacing[index_axis])
    return Orientation(
        (axes[0], axes[1], axes[2]),
        (flips[0], flips[1], flips[2]),
        (spacing[0], spacing[1], spacing[2]),
    )


def to_canonical(
    array: npt.NDArray[np.generic], orientation: Orientation
) -> npt.NDArray[np.generic]:
    out = np.transpose(array, orientation.axes)
    flip_axes = tuple(a for a, f in enumerate(orientation.flips) if f)
    return np.flip(out, axis=flip_axes) if flip_axes else out


def from_canonical(
    array: npt.NDArray[np.generic], orientation: Orientation
) -> npt.NDArray[np.generic]:
    flip_axes = tuple(a for a, f in enumerate(orientation.flips) if f)
    out = np.flip(array, axis=flip_axes) if flip_axes else array
    return np.transpose(out, np.argsort(orientation.axes))


def model_grid(volume: Volume, prep: Preprocessing) -> ModelGrid:
    orientation = orientation_of(volume)
    canonical_shape = tuple(volume.array.shape[a] for a in orientation.axes)
    target_zyx = (prep.spacing[2], prep.spacing[1], prep.spacing[0])
    shape = tuple(
        max(1, round(n * s / t))
        for n, s, t in zip(canonical_shape, orientation.spacing_zyx, target_zyx, strict=True)
    )
    spacing = tuple(
        n * s / m for n, s, m in zip(canonical_shape, orientation.spacing_zyx, shape, strict=True)
    )
    return ModelGrid(
        orientation,
        (canonical_shape[0], canonical_shape[1], canonical_shape[2]),
        (shape[0], shape[1], shape[2]),
        (spacing[0], spacing[1], spacing[2]),
    )


def resample_hu(volume: Volume, grid: ModelGrid) -> torch.Tensor:
    """Canonical HU on the model grid as a float32 tensor of shape (1, 1, z, y, x)."""
    source = shared_tensor(volume.array).to(torch.float32)  # converted on torch's threads
    orientation = grid.orientation
    canonical = source.permute(orientation.axes)
    flip_axes = [axis for axis, flipped in enumerate(orientation.flips) if flipped]
    if flip_axes:
        canonical = torch.flip(canonical, flip_axes)
    tensor = canonical.contiguous()[None, None]
    if tuple(tensor.shape[2:]) == grid.shape:
        return tensor
    return F.interpolate(tensor, size=grid.shape, mode="trilinear", align_corners=False)


def shared_tensor(array: npt.NDArray[Any]) -> torch.Tensor:
    """A tensor on ``array``'s memory (native byte order, C order; copied only if it is not),
    for reading: torch warns that read-only arrays (volumes parsed in place) stay read-only."""
    native = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("="))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(native)


def window(hu: torch.Tensor, prep: Preprocessing) -> torch.Tensor:
    """HU -> [0, 1] with the model's window."""
    scale = 1.0 / (prep.hu_max - prep.hu_min)
    return ((hu - prep.hu_min) * scale).clamp_(0.0, 1.0)


def resample_mask_to_grid(mask: npt.NDArray[np.generic], grid: ModelGrid) -> npt.NDArray[np.uint8]:
    """A binary mask on the input grid -> the model grid (trilinear, threshold 0.5)."""
    canonical = to_canonical(mask, grid.orientation)
    tensor = torch.from_numpy(np.ascontiguousarray(canonical, dtype=np.float32))[None, None]
    resized = F.interpolate(tensor, size=grid.shape, mode="trilinear", align_corners=False)
    return (resized[0, 0] >= 0.5).numpy().astype(np.uint8)


def nearest_sources(source: int, target: int) -> npt.NDArray[np.intp]:
    """For each of ``target`` points along an axis, the source index that torch's
    ``nearest-exact`` interpolation from ``source`` points takes (computed by torch itself)."""
    index = torch.arange(source, dtype=torch.float64)[None, None]
    picked = F.interpolate(index, size=target, mode="nearest-exact")[0, 0]
    return picked.numpy().astype(np.intp)


def restore_mask(mask: npt.NDArray[np.uint8], grid: ModelGrid) -> npt.NDArray[np.uint8]:
    """A mask on the model grid -> exactly the input grid (nearest neighbour, as
    ``F.interpolate(..., mode="nearest-exact")`` would give), computed only over the mask's
    bounding box and written through a canonical view of the zeroed output."""
    shape = [0, 0, 0]
    for canonical_axis, input_axis in enumerate(grid.orientation.axes):
        shape[input_axis] = grid.canonical_shape[canonical_axis]
    out = np.zeros(shape, dtype=np.uint8)
    box = bounding_box(np.asarray(mask) > 0)
    if box is None:
        return out
    crop: npt.NDArray[np.uint8] = np.asarray(mask)
    targets = []
    for axis, part in enumerate(box):
        start, stop = int(part.start), int(part.stop)
        sources = nearest_sources(grid.shape[axis], grid.canonical_shape[axis])
        inside = np.flatnonzero((sources >= start) & (sources < stop))
        low, high = int(inside[0]), int(inside[-1]) + 1
        crop = crop.take(sources[low:high], axis=axis)
        targets.append(slice(low, high))
    to_canonical(out, grid.orientation)[tuple(targets)] = crop
    return out
