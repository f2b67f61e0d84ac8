"""Anatomical coordinates inside a lung mask, used to place synthetic findings.

For every lung voxel: distance to the lung boundary (mm), height from the lung base
(0 = most inferior lung slice, 1 = apex), posteriority (0 = most anterior, 1 = most
posterior) and side (1 or 2, split at the mask's centre of mass in x). Patient axes come
from the volume direction: in LPS (DICOM) and RAS alike, +z points to the head; in LPS +y
points to the back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from scipy import ndimage

from covidct_core.errors import PermanentError

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]
IDENTITY_DIRECTION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class LungGeometry:
    """Per-voxel anatomical coordinates on a ``(z, y, x)`` grid (0 outside the lungs)."""

    mask: BoolArray
    spacing: tuple[float, float, float]
    distance_mm: FloatArray
    height: FloatArray
    posteriority: FloatArray
    side: npt.NDArray[np.int8]

    @property
    def shape(self) -> tuple[int, int, int]:
        z, y, x = self.mask.shape
        return z, y, x

    @property
    def lung_voxels(self) -> int:
        return int(self.mask.sum())


def _normalised_axis(mask: BoolArray, axis: int, increasing: bool) -> FloatArray:
    """0..1 position along ``axis`` within the mask's extent (1 at the far end)."""
    indices = np.nonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))[0]
    low, high = int(indices.min()), int(indices.max())
    coords = np.arange(mask.shape[axis], dtype=np.float32)
    values = (coords - low) / max(high - low, 1)
    if not increasing:
        values = 1.0 - values
    shape = [1, 1, 1]
    shape[axis] = mask.shape[axis]
    return np.clip(values, 0.0, 1.0).reshape(shape).astype(np.float32)


def lung_geometry(
    mask: npt.NDArray[Any],
    spacing: tuple[float, float, float],
    direction: tuple[float, ...] = IDENTITY_DIRECTION,
) -> LungGeometry:
    """Compute the anatomical coordinates of ``mask`` (``(z, y, x)``, spacing ``(x, y, z)``)."""
    lung = np.asarray(mask) > 0
    if not lung.any():
        raise PermanentError("NO_LUNG_FOUND", "the lung mask is empty", ["mask"])
    sampling = (spacing[2], spacing[1], spacing[0])
    distance = ndimage.distance_transform_edt(lung, sampling=sampling).astype(np.float32)
    superior_with_z = direction[8] >= 0
    posterior_with_y = direction[4] >= 0
    height = np.broadcast_to(_normalised_axis(lung, 0, superior_with_z), lung.shape)
    posterior = np.broadcast_to(_normalised_axis(lung, 1, posterior_with_y), lung.shape)
    x_centre = float(np.nonzero(lung)[2].mean())
    x_index = np.arange(lung.shape[2])[None, None, :]
    side = np.where(lung, np.where(x_index < x_centre, 1, 2), 0).astype(np.int8)
    return LungGeometry(
        mask=lung,
        spacing=spacing,
        distance_mm=distance,
        height=np.where(lung, height, 0.0).astype(np.float32),
        posteriority=np.where(lung, posterior, 0.0).astype(np.float32),
        side=side,
    )


def smooth_noise(
    shape: tuple[int, ...],
    spacing: tuple[float, float, float],
    correlation_mm: float,
    rng: np.random.Generator,
) -> FloatArray:
    """Zero-mean, unit-variance random field with about ``correlation_mm`` blob size.

    White noise on a coarse grid (one node per ``correlation_mm / 2``), smoothed and
    interpolated trilinearly to ``shape``: cheap even on full-resolution volumes.
    """
    step = correlation_mm / 2.0
    physical = (shape[0] * spacing[2], shape[1] * spacing[1], shape[2] * spacing[0])
    coarse = tuple(max(int(np.ceil(extent / step)) + 2, 3) for extent in physical)
    field = ndimage.gaussian_filter(rng.standard_normal(coarse).astype(np.float32), 1.0)
    tensor = torch.from_numpy(np.ascontiguousarray(field))[None, None]
    out = F.interpolate(tensor, size=tuple(shape), mode="trilinear", align_corners=True)
    values = out[0, 0].numpy()
    std = float(values.std())
    return ((values - float(values.mean())) / (std if std > 0 else 1.0)).astype(np.float32)


def top_fraction(score: FloatArray, region: BoolArray, fraction: float) -> BoolArray:
    """The ``fraction`` of ``region``'s voxels with the highest ``score``."""
    count = int(region.sum())
    keep = round(fraction * count)
    out = np.zeros(region.shape, dtype=bool)
    if keep <= 0 or count == 0:
        return out
    values = score[region]
    order = np.argpartition(-values, min(keep, count) - 1)[:keep]
    flat = np.flatnonzero(region)
    out.flat[flat[order]] = True
    return out
