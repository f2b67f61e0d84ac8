"""Slice spacing analysis along the normal: uniform, missing slices (gaps) or variable."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from covidct_core.errors import PermanentError
from covidct_ingest import codes
from covidct_ingest.config import AssemblyRules


@dataclass(frozen=True)
class SpacingAnalysis:
    typical: float  # median distance between neighbouring slices (mm)
    minimum: float
    maximum: float
    uniform: bool
    gaps: bool  # every irregular step is a whole multiple of the typical spacing
    missing: tuple[float, ...]  # distances (relative to the first slice) of missing slices


def analyse_spacing(relative: npt.NDArray[np.float64], rules: AssemblyRules) -> SpacingAnalysis:
    """Classify the steps between sorted slice distances (``relative[0] == 0``)."""
    steps = np.diff(relative)
    typical = float(np.median(steps))
    tol = max(rules.spacing_tolerance_mm, rules.spacing_tolerance_rel * typical)
    if typical <= tol:
        raise PermanentError(
            codes.INCONSISTENT_GEOMETRY, f"slices only {typical:.4f} mm apart along the normal"
        )
    multiples = np.rint(steps / typical)
    irregular = (multiples < 1) | (np.abs(steps - multiples * typical) > tol)
    gap_steps = (multiples >= 2) & ~irregular
    uniform = not irregular.any() and not gap_steps.any()
    gaps = bool(gap_steps.any()) and not irregular.any()
    missing: list[float] = []
    if gaps:
        for index in np.flatnonzero(gap_steps):
            count = int(multiples[index])
            step = steps[index] / count
            missing.extend(float(relative[index] + j * step) for j in range(1, count))
    return SpacingAnalysis(
        typical=typical,
        minimum=float(steps.min()),
        maximum=float(steps.max()),
        uniform=uniform,
        gaps=gaps,
        missing=tuple(missing),
    )


def resample_targets(
    relative: npt.NDArray[np.float64], policy: str | float
) -> tuple[tuple[float, ...], float]:
    """Uniform output distances from 0 to the last slice, and their spacing."""
    steps = np.diff(relative)
    if isinstance(policy, int | float):
        spacing = float(policy)
    elif policy == "min":
        spacing = float(steps.min())
    else:
        spacing = float(np.median(steps))
    extent = float(relative[-1])
    count = int(np.floor(extent / spacing + 1e-6)) + 1
    return tuple(float(i * spacing) for i in range(count)), spacing
