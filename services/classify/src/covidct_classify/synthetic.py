"""Synthetic COVID-19-like findings and non-COVID confounders inserted into real lungs.

No COVID-labelled CT exists in this project, so the reference classifier learns from
findings painted into normal lungs (real series and phantoms). Positives follow the typical
COVID-19 pattern: bilateral, peripheral, lower-lobe-predominant ground-glass opacities
(GGO, -750..-300 HU), crazy paving (GGO with a reticular network) and consolidation
(-100..+100 HU) covering 1 % to 50 % of the lung volume. Negatives are normal lungs or
confounders: emphysema-like low attenuation areas, a solitary nodule, dependent density
(posterior gradient) and basal atelectasis.

All functions work on a ``(z, y, x)`` HU array and a :class:`LungGeometry` on the same grid,
so they run equally on full-resolution volumes and on 192x192x64 classifier crops.
Lesion labels: 0 none, 1 GGO, 2 crazy paving, 3 consolidation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from covidct_classify.lung_geometry import (
    IDENTITY_DIRECTION,
    FloatArray,
    LungGeometry,
    lung_geometry,
    smooth_noise,
    top_fraction,
)

GGO, CRAZY_PAVING, CONSOLIDATION = 1, 2, 3
LESION_NAMES = {GGO: "ggo", CRAZY_PAVING: "crazy_paving", CONSOLIDATION: "consolidation"}
GGO_HU = (-750.0, -300.0)
CONSOLIDATION_HU = (-100.0, 100.0)
MIN_FRACTION, MAX_FRACTION = 0.01, 0.5
DENSE_TISSUE_HU = -300.0
DENSE_PENALTY = 100.0
CONFOUNDERS = ("emphysema", "nodule", "dependent_density", "basal_atelectasis")
LabelArray = npt.NDArray[np.int8]


@dataclass(frozen=True)
class Confounder:
    """A non-COVID finding. ``strength``: emphysema lung fraction, nodule radius (mm),
    dependent-density amplitude (HU) or atelectasis thickness (mm)."""

    kind: str
    strength: float


@dataclass(frozen=True)
class CaseSpec:
    """What to paint into one lung: COVID-like lesions (if ``covid``) and confounders."""

    covid: bool
    fraction: float = 0.0
    consolidation_share: float = 0.0
    crazy_paving_share: float = 0.0
    confounders: tuple[Confounder, ...] = ()


def random_case_spec(
    rng: np.random.Generator, covid: bool, min_fraction: float = MIN_FRACTION
) -> CaseSpec:
    """A random positive (log-uniform ``min_fraction``-50 % of the lung) or negative case."""
    if covid:
        fraction = float(np.exp(rng.uniform(np.log(min_fraction), np.log(MAX_FRACTION))))
        consolidation = float(rng.uniform(0.0, 0.35)) if rng.random() < 0.6 else 0.0
        crazy = float(rng.uniform(0.0, 0.4)) if rng.random() < 0.5 else 0.0
        count = 1 if rng.random() < 0.3 else 0
    else:
        fraction, consolidation, crazy = 0.0, 0.0, 0.0
        count = int(rng.choice([0, 1, 2], p=[0.3, 0.45, 0.25]))
    kinds = rng.choice(len(CONFOUNDERS), size=count, replace=False)
    confounders = tuple(_random_confounder(CONFOUNDERS[int(k)], rng) for k in kinds)
    return CaseSpec(covid, fraction, consolidation, crazy, confounders)


def _random_confounder(kind: str, rng: np.random.Generator) -> Confounder:
    ranges = {
        "emphysema": (0.02, 0.2),
        "nodule": (3.0, 15.0),
        "dependent_density": (60.0, 250.0),
        "basal_atelectasis": (3.0, 10.0),
    }
    low, high = ranges[kind]
    return Confounder(kind, float(rng.uniform(low, high)))


def _f32(values: Any) -> FloatArray:
    out: FloatArray = np.asarray(values, dtype=np.float32)
    return out


def _soft(indicator: npt.NDArray[Any], geometry: LungGeometry) -> FloatArray:
    """Indicator smoothed over about one voxel, kept inside the lungs."""
    smoothed = ndimage.gaussian_filter(indicator.astype(np.float32), 0.7)
    return np.where(geometry.mask, np.maximum(smoothed, indicator), 0.0).astype(np.float32)


def _dense(hu: FloatArray, geometry: LungGeometry) -> FloatArray:
    """1 where the mask covers solid tissue (tumour, liver dome), not aerated lung.

    Blurred over ~3 mm so that thin vessels stay paintable (lesions surround them).
    """
    sigma = [3.0 / geometry.spacing[2], 3.0 / geometry.spacing[1], 3.0 / geometry.spacing[0]]
    blurred = ndimage.gaussian_filter(np.asarray(hu, dtype=np.float32), sigma)
    return _f32(blurred > DENSE_TISSUE_HU)


def _texture(hu: FloatArray, geometry: LungGeometry) -> FloatArray:
    """Deviation from the median lung HU: noise and vessels, kept under a lesion."""
    level = float(np.median(hu[geometry.mask]))
    return _f32(np.clip(hu - level, -150.0, 1000.0))


def insert_covid_findings(
    hu: FloatArray,
    geometry: LungGeometry,
    fraction: float,
    rng: np.random.Generator,
    consolidation_share: float = 0.0,
    crazy_paving_share: float = 0.0,
) -> tuple[FloatArray, LabelArray]:
    """Paint bilateral peripheral basal lesions covering ``fraction`` of each lung."""
    if not MIN_FRACTION / 2 <= fraction <= 1.0:
        raise ValueError(f"lesion fraction {fraction} outside [{MIN_FRACTION / 2}, 1]")
    spacing = geometry.spacing
    propensity = (
        1.8 * np.exp(-geometry.distance_mm / 12.0)
        + 1.0 * (1.0 - geometry.height)
        + 0.4 * geometry.posteriority
        + 0.9 * smooth_noise(geometry.shape, spacing, 18.0, rng)
        + 0.35 * smooth_noise(geometry.shape, spacing, 6.0, rng)
        - DENSE_PENALTY * _dense(hu, geometry)
    ).astype(np.float32)
    region = np.zeros(geometry.shape, dtype=bool)
    for side in (1, 2):
        region |= top_fraction(propensity, geometry.side == side, fraction)
    core = propensity + 0.5 * smooth_noise(geometry.shape, spacing, 8.0, rng)
    consolidated = top_fraction(core, region, consolidation_share)
    rest = region & ~consolidated
    crazy_share = crazy_paving_share / max(1.0 - consolidation_share, 1e-6)
    crazy = top_fraction(smooth_noise(geometry.shape, spacing, 12.0, rng), rest, crazy_share)
    labels = np.zeros(geometry.shape, dtype=np.int8)
    labels[region] = GGO
    labels[crazy] = CRAZY_PAVING
    labels[consolidated] = CONSOLIDATION

    ggo_level = float(rng.uniform(-680.0, -420.0))
    ggo = np.clip(ggo_level + 70.0 * smooth_noise(geometry.shape, spacing, 8.0, rng), *GGO_HU)
    lines = np.exp(-((smooth_noise(geometry.shape, spacing, 4.0, rng) / 0.22) ** 2))
    paving = np.clip(ggo + 320.0 * lines, GGO_HU[0], -100.0)
    dense_level = float(rng.uniform(-60.0, 60.0))
    dense = np.clip(
        dense_level + 25.0 * smooth_noise(geometry.shape, spacing, 6.0, rng), *CONSOLIDATION_HU
    )
    target = np.where(labels == CONSOLIDATION, dense, np.where(labels == CRAZY_PAVING, paving, ggo))
    keep_texture = np.where(labels == CONSOLIDATION, 0.1, 0.6).astype(np.float32)
    alpha = _soft(region, geometry)
    blended = (1.0 - alpha) * hu + alpha * (target + keep_texture * _texture(hu, geometry))
    return blended.astype(np.float32), labels


def add_emphysema(
    hu: FloatArray, geometry: LungGeometry, fraction: float, rng: np.random.Generator
) -> FloatArray:
    """Upper-zone predominant low attenuation areas (-1000..-950 HU) over ``fraction``."""
    score = (
        geometry.height
        + 0.8 * smooth_noise(geometry.shape, geometry.spacing, 10.0, rng)
        - DENSE_PENALTY * _dense(hu, geometry)
    )
    region = top_fraction(score.astype(np.float32), geometry.mask, fraction)
    target = float(rng.uniform(-1000.0, -950.0))
    vessels = 0.3 * np.clip(_texture(hu, geometry), 0.0, None)
    alpha = _soft(region, geometry)
    return ((1.0 - alpha) * hu + alpha * (target + vessels)).astype(np.float32)


def add_nodule(
    hu: FloatArray, geometry: LungGeometry, radius_mm: float, rng: np.random.Generator
) -> FloatArray:
    """One solid nodule (-30..+60 HU) of ``radius_mm`` with a soft edge, inside the lungs."""
    inside = geometry.mask & (geometry.distance_mm >= 0.6 * radius_mm)
    candidates = np.flatnonzero(inside if inside.any() else geometry.mask)
    centre = np.unravel_index(int(rng.choice(candidates)), geometry.shape)
    sz, sy, sx = geometry.spacing[2], geometry.spacing[1], geometry.spacing[0]
    zz, yy, xx = np.ogrid[: geometry.shape[0], : geometry.shape[1], : geometry.shape[2]]
    distance = np.sqrt(
        ((zz - centre[0]) * sz) ** 2 + ((yy - centre[1]) * sy) ** 2 + ((xx - centre[2]) * sx) ** 2
    )
    edge = min(geometry.spacing)
    alpha = np.clip((radius_mm - distance) / edge + 0.5, 0.0, 1.0) * geometry.mask
    target = float(rng.uniform(-30.0, 60.0))
    return _f32((1.0 - alpha) * hu + alpha * target)


def add_dependent_density(
    hu: FloatArray, geometry: LungGeometry, amplitude_hu: float, rng: np.random.Generator
) -> FloatArray:
    """A smooth posterior (dependent) gradient rising to ``amplitude_hu`` at the back."""
    start = float(rng.uniform(0.4, 0.6))
    ramp = np.clip((geometry.posteriority - start) / (1.0 - start), 0.0, 1.0) ** 1.5
    wobble = 1.0 + 0.1 * smooth_noise(geometry.shape, geometry.spacing, 30.0, rng)
    return _f32(hu + amplitude_hu * ramp * wobble * geometry.mask)


def add_basal_atelectasis(
    hu: FloatArray, geometry: LungGeometry, thickness_mm: float, rng: np.random.Generator
) -> FloatArray:
    """A thin dense band (-80..+60 HU) along the posterior pleura of one or both bases."""
    base = float(rng.uniform(0.1, 0.25))
    region = (
        geometry.mask
        & (geometry.distance_mm <= thickness_mm)
        & (geometry.height <= base)
        & (geometry.posteriority >= 0.6)
    )
    if rng.random() < 0.4:
        region &= geometry.side == int(rng.integers(1, 3))
    alpha = _soft(region, geometry)
    target = float(rng.uniform(-80.0, 60.0))
    return ((1.0 - alpha) * hu + alpha * target).astype(np.float32)


def add_confounder(
    hu: FloatArray, geometry: LungGeometry, confounder: Confounder, rng: np.random.Generator
) -> FloatArray:
    if confounder.kind == "emphysema":
        return add_emphysema(hu, geometry, confounder.strength, rng)
    if confounder.kind == "nodule":
        return add_nodule(hu, geometry, confounder.strength, rng)
    if confounder.kind == "dependent_density":
        return add_dependent_density(hu, geometry, confounder.strength, rng)
    if confounder.kind == "basal_atelectasis":
        return add_basal_atelectasis(hu, geometry, confounder.strength, rng)
    raise ValueError(f"unknown confounder {confounder.kind!r}; known: {', '.join(CONFOUNDERS)}")


def synthesize(
    hu: npt.NDArray[Any], geometry: LungGeometry, spec: CaseSpec, rng: np.random.Generator
) -> tuple[FloatArray, LabelArray]:
    """Apply ``spec`` to ``hu`` (same grid as ``geometry``): confounders, then lesions."""
    out = np.asarray(hu, dtype=np.float32)
    for confounder in spec.confounders:
        out = add_confounder(out, geometry, confounder, rng)
    if not spec.covid:
        return out, np.zeros(geometry.shape, dtype=np.int8)
    return insert_covid_findings(
        out, geometry, spec.fraction, rng, spec.consolidation_share, spec.crazy_paving_share
    )


def synthesize_volume(
    hu: npt.NDArray[Any],
    mask: npt.NDArray[Any],
    spacing: tuple[float, float, float],
    spec: CaseSpec,
    rng: np.random.Generator,
    direction: tuple[float, ...] = IDENTITY_DIRECTION,
) -> tuple[npt.NDArray[np.int16], LabelArray]:
    """Full-volume variant: works inside the lung box and returns int16 HU + labels."""
    lung = np.asarray(mask) > 0
    nonzero = np.nonzero(lung)
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in nonzero)
    geometry = lung_geometry(lung[box], spacing, direction)
    painted, labels_box = synthesize(np.asarray(hu)[box], geometry, spec, rng)
    out = np.asarray(hu, dtype=np.float32).copy()
    out[box] = painted
    labels = np.zeros(lung.shape, dtype=np.int8)
    labels[box] = labels_box
    return np.clip(np.rint(out), -1024, 3071).astype(np.int16), labels


def lesion_fractions(labels: LabelArray, mask: npt.NDArray[Any]) -> dict[str, float]:
    """Share of lung voxels per lesion kind, plus ``total``."""
    lung = np.asarray(mask) > 0
    count = max(int(lung.sum()), 1)
    out = {name: float((labels[lung] == code).sum()) / count for code, name in LESION_NAMES.items()}
    out["total"] = float((labels[lung] > 0).sum()) / count
    return out
