"""Quantitative lung metrics from the HU volume and the lung mask (independent of the model).

Thresholds follow the published "percentage of opacity" (PO) and "percentage of high
opacity" (PHO) of Chaganti et al., Radiology: AI 2020, where PHO counts consolidation as
voxels above -200 HU. Their PO counts abnormal voxels found by a network; here it is
approximated with a fixed threshold, the lower bound of "poorly aerated" lung used in
quantitative COVID-19 CT studies (-700 HU; normal aerated lung is about -950..-700 HU):

- ``lung_volume_ml``: mask voxels x voxel volume / 1000.
- ``percent_opacity``: 100 x lung voxels with HU >= -700 / lung voxels (GGO + consolidation).
- ``percent_high_opacity``: 100 x lung voxels with HU >= -200 / lung voxels (consolidation).
- ``mean_lung_hu``: mean HU over the mask.

Vessels, airway walls and partial-volume voxels at the lung boundary inside the mask also
exceed these thresholds, so a normal lung scores a few percent, not zero.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from covidct_core.errors import PermanentError

OPACITY_MIN_HU = -700.0
HIGH_OPACITY_MIN_HU = -200.0
LUNG_VOLUME_RANGE_ML = (1500.0, 9000.0)  # same plausible range as segment
LUNG_VOLUME_OUT_OF_RANGE = "LUNG_VOLUME_OUT_OF_RANGE"
LUNG_TRUNCATED = "LUNG_TRUNCATED"


@dataclass(frozen=True)
class LungMetrics:
    """Threshold-based lung measurements; see the module docstring for definitions."""

    lung_volume_ml: float
    percent_opacity: float
    percent_high_opacity: float
    mean_lung_hu: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def lung_metrics(
    hu: npt.NDArray[Any], mask: npt.NDArray[Any], spacing: tuple[float, float, float]
) -> LungMetrics:
    """Measure the lungs in ``hu`` (``(z, y, x)``) under ``mask``; spacing is ``(x, y, z)``."""
    if hu.shape != mask.shape:
        raise PermanentError(
            "MASK_GRID_MISMATCH", f"mask shape {mask.shape} != volume shape {hu.shape}"
        )
    lung = np.asarray(mask) > 0
    count = int(lung.sum())
    if count == 0:
        raise PermanentError("NO_LUNG_FOUND", "the lung mask is empty", ["mask"])
    values = np.asarray(hu)[lung].astype(np.float32)
    voxel_ml = float(spacing[0] * spacing[1] * spacing[2]) / 1000.0
    return LungMetrics(
        lung_volume_ml=count * voxel_ml,
        percent_opacity=100.0 * int((values >= OPACITY_MIN_HU).sum()) / count,
        percent_high_opacity=100.0 * int((values >= HIGH_OPACITY_MIN_HU).sum()) / count,
        mean_lung_hu=float(values.mean(dtype=np.float64)),
    )


def metric_qa_flags(metrics: LungMetrics, mask: npt.NDArray[Any]) -> list[str]:
    """Flags raised by the measurements: implausible lung volume, lungs cut by the scan."""
    flags = []
    low, high = LUNG_VOLUME_RANGE_ML
    if not low <= metrics.lung_volume_ml <= high:
        flags.append(LUNG_VOLUME_OUT_OF_RANGE)
    lung = np.asarray(mask) > 0
    if lung[0].any() or lung[-1].any():
        flags.append(LUNG_TRUNCATED)
    return flags
