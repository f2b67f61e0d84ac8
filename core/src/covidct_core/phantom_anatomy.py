"""Anatomy of the synthetic chest phantom: shapes drawn in patient millimetres.

Coordinates are LPS relative to the chest centre (+x patient left, +y posterior,
+z superior); every function fills a float32 HU canvas and a lung-label canvas
(1 = right lung, 2 = left lung). Used by :mod:`covidct_core.phantom`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

RIGHT_LUNG = 1
LEFT_LUNG = 2
HU_AIR = -1000.0
HU_FAT = -100.0
HU_MUSCLE = 45.0
HU_BLOOD = 40.0
HU_LIVER = 58.0
HU_BONE = 450.0
HU_CORTEX = 800.0
HU_LUNG = -860.0

F32 = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Anatomy:
    body_a: float
    body_b: float
    fat: float
    muscle: float
    lung_height: float
    z_low: float
    med_half_width: float
    heart: tuple[float, float, float, float, float, float]
    dome_right: float
    dome_left: float
    trachea_radius: float
    carina_frac: float
    lung_hu: float
    gravity_hu: float
    vessel_scale: float


def random_anatomy(rng: np.random.Generator, jitter: float) -> Anatomy:
    def vary(value: float, spread: float) -> float:
        return value + jitter * spread * float(rng.uniform(-1, 1))

    lung_height = vary(235, 30)
    return Anatomy(
        body_a=vary(165, 20),
        body_b=vary(122, 14),
        fat=vary(14, 8),
        muscle=vary(11, 3),
        lung_height=lung_height,
        z_low=vary(45, 15),
        med_half_width=vary(30, 6),
        heart=(vary(22, 8), vary(-22, 8), 0.28 * lung_height, vary(62, 8), vary(52, 6), 55),
        dome_right=vary(58, 12),
        dome_left=vary(42, 10),
        trachea_radius=vary(9, 1.5),
        carina_frac=vary(0.62, 0.05),
        lung_hu=vary(HU_LUNG, 60),
        gravity_hu=vary(55, 25),
        vessel_scale=vary(1.0, 0.3),
    )


def _full(mask: Any, shape: tuple[int, ...]) -> Mask:
    """Broadcast a 2D (1, y, x) mask to the whole volume."""
    return np.broadcast_to(np.asarray(mask, dtype=bool), shape)


def _ellipse(x: F32, y: F32, cx: float, cy: float, a: Any, b: Any) -> Any:
    return ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2


def render(
    an: Anatomy,
    with_arms: bool,
    with_table: bool,
    coords: tuple[F32, F32, F32],
    spacing: tuple[float, float, float],
    rng: np.random.Generator,
) -> tuple[F32, npt.NDArray[np.uint8], Mask]:
    x, y, z = coords
    shape = (z.shape[0], y.shape[1], x.shape[2])
    hu = np.full(shape, HU_AIR, dtype=np.float32)
    neck = np.clip((z - (an.lung_height - 5)) / 40.0, 0, 1)
    a_body = an.body_a * (1 - 0.55 * neck)
    b_body = an.body_b * (1 - 0.25 * neck)
    body = _ellipse(x, y, 0.0, 0.0, a_body, b_body) <= 1
    inner_fat = _ellipse(x, y, 0.0, 0.0, a_body - an.fat, b_body - an.fat) <= 1
    a_cav = a_body - an.fat - an.muscle - 8
    b_cav = b_body - an.fat - an.muscle - 8
    cavity = _ellipse(x, y, 0.0, 2.0, a_cav, b_cav) <= 1
    hu[body] = HU_FAT
    hu[inner_fat] = HU_MUSCLE
    if with_arms:
        arms = np.zeros(shape, dtype=bool)
        for side in (-1.0, 1.0):
            arms |= _full(_ellipse(x, y, side * (an.body_a + 45), 5.0, 38.0, 42.0) <= 1, shape)
        hu[arms] = HU_MUSCLE
        hu[arms & (_ellipse(x, y, -an.body_a - 45, 5.0, 11.0, 11.0) <= 1)] = HU_BONE
        hu[arms & (_ellipse(x, y, an.body_a + 45, 5.0, 11.0, 11.0) <= 1)] = HU_BONE
        body = body | arms
    _draw_ribs(hu, x, y, z, a_cav, b_cav, an)
    hu[cavity & (z <= an.lung_height + 10)] = HU_BLOOD
    labels = _draw_lungs(hu, x, y, z, a_cav, b_cav, cavity, an, rng, spacing)
    _draw_mediastinum(hu, labels, x, y, z, an)
    _draw_spine_sternum(hu, labels, x, y, z, an, b_cav, b_body)
    _draw_abdomen(hu, x, y, z, a_cav, b_cav, an, labels)
    _draw_airways(hu, labels, x, y, z, an)
    hu[~body] = HU_AIR
    labels[~body] = 0
    if with_table:
        table_top = an.body_b + 4
        table = (y >= table_top) & (y <= table_top + 14) & (np.abs(x) < 210)
        table = np.broadcast_to(table, shape)
        hu[table] = -650.0
        hu[table & ((y <= table_top + 3) | (y >= table_top + 11))] = 250.0
    return hu, labels, body


def _draw_ribs(hu: F32, x: F32, y: F32, z: F32, a_cav: Any, b_cav: Any, an: Anatomy) -> None:
    ring = _ellipse(x, y, 0.0, 2.0, a_cav + 9, b_cav + 9)
    in_ring = (ring <= 1) & (_ellipse(x, y, 0.0, 2.0, a_cav + 1, b_cav + 1) > 1)
    angle = np.arctan2(x, -(y - 2.0))
    not_cartilage = np.abs(angle) > 0.45
    phase = np.mod(z + 40.0 * (1 - np.abs(angle) / np.pi), 24.0)
    rib_z = (phase < 9.0) & (z > -10) & (z < an.lung_height + 15)
    ribs = in_ring & not_cartilage & rib_z
    hu[ribs] = HU_BONE
    hu[ribs & (phase < 1.6)] = HU_CORTEX


def _apex_scale(z: F32, top: float, radius: float) -> Any:
    t = np.clip((z - (top - radius)) / radius, 0, 1)
    return np.sqrt(np.clip(1 - t**2, 0.0, 1.0))


def _draw_lungs(
    hu: F32,
    x: F32,
    y: F32,
    z: F32,
    a_cav: Any,
    b_cav: Any,
    cavity: Mask,
    an: Anatomy,
    rng: np.random.Generator,
    spacing: tuple[float, float, float],
) -> npt.NDArray[np.uint8]:
    labels = np.zeros(hu.shape, dtype=np.uint8)
    scale = _apex_scale(z, an.lung_height, 70.0) + 1e-3
    heart = _heart_field(x, y, z, an) <= 1.15
    for side, label, dome in ((-1.0, RIGHT_LUNG, an.dome_right), (1.0, LEFT_LUNG, an.dome_left)):
        cx = side * (an.med_half_width + 0.5 * (a_cav - an.med_half_width))
        lung_a = (0.5 * (a_cav - an.med_half_width) + 30) * scale
        lung_b = (b_cav + 10) * scale
        own = _ellipse(x, y, cx - side * 12, 6.0, lung_a, lung_b) <= 1
        diaphragm = _diaphragm(x, y, side, dome, a_cav, b_cav, an)
        lung = (
            own & cavity & (z > diaphragm) & (z < an.lung_height) & (side * x > an.med_half_width)
        )
        lung &= ~heart
        labels[lung] = label
    lung_any = labels > 0
    gravity = an.gravity_hu * np.clip((y + 60) / 140, 0, 1)
    hu[lung_any] = np.broadcast_to(an.lung_hu + gravity, hu.shape)[lung_any]
    texture = _smooth_noise(hu.shape, spacing, 6.0, rng) * 18.0
    hu[lung_any] += texture[lung_any]
    vessels = _vessel_network(x, y, z, an, spacing, rng) & lung_any
    hu[vessels] = HU_BLOOD
    return labels


def _diaphragm(
    x: F32, y: F32, side: float, dome: float, a_cav: Any, b_cav: Any, an: Anatomy
) -> Any:
    """Height (mm) of one hemidiaphragm: a dome, lower at the rim and posteriorly."""
    cx = side * (an.med_half_width + 0.5 * (a_cav - an.med_half_width))
    rim = _ellipse(x, y, cx, -5.0, 0.5 * (a_cav - an.med_half_width) + 10, b_cav)
    return dome * np.clip(1 - rim, -0.25, 1) - 0.12 * (y - 20)


def _heart_field(x: F32, y: F32, z: F32, an: Anatomy) -> Any:
    hx, hy, hz, ha, hb, hc = an.heart
    return ((x - hx) / ha) ** 2 + ((y - hy) / hb) ** 2 + ((z - hz) / hc) ** 2


def _smooth_noise(
    shape: tuple[int, ...],
    spacing: tuple[float, float, float],
    sigma_mm: float,
    rng: np.random.Generator,
) -> F32:
    """Unit-variance smooth noise, made on a coarse grid and upsampled (cheap)."""
    step = max(sigma_mm / 2, min(spacing))
    factors = [spacing[2] / step, spacing[1] / step, spacing[0] / step]
    coarse_shape = tuple(max(4, math.ceil(n * f) + 2) for n, f in zip(shape, factors, strict=True))
    coarse = ndimage.gaussian_filter(rng.standard_normal(coarse_shape), sigma_mm / step / 2)
    coarse /= coarse.std() + 1e-6
    return _upsample_linear(coarse.astype(np.float32), shape)


def _upsample_linear(coarse: F32, shape: tuple[int, ...]) -> F32:
    """Separable linear interpolation of ``coarse`` onto ``shape`` (corners aligned)."""
    out = coarse
    for axis, n in enumerate(shape):
        m = out.shape[axis]
        pos = np.linspace(0.0, m - 1.0, n, dtype=np.float32)
        lo = np.minimum(pos.astype(np.int64), m - 2)
        w_shape = [1] * out.ndim
        w_shape[axis] = n
        w = (pos - lo.astype(np.float32)).reshape(w_shape)
        out = np.take(out, lo, axis=axis) * (1 - w) + np.take(out, lo + 1, axis=axis) * w
    return out.astype(np.float32)


def _vessel_network(
    x: F32,
    y: F32,
    z: F32,
    an: Anatomy,
    spacing: tuple[float, float, float],
    rng: np.random.Generator,
) -> Mask:
    """Branching tube-like structures: where two smooth random fields are both near zero."""
    shape = (z.shape[0], y.shape[1], x.shape[2])
    f1 = _smooth_noise(shape, spacing, 9.0, rng)
    f2 = _smooth_noise(shape, spacing, 9.0, rng)
    hilum_z = an.carina_frac * an.lung_height - 30
    dist = np.sqrt((np.abs(x) - an.med_half_width - 10) ** 2 + (y - 10) ** 2 + (z - hilum_z) ** 2)
    width = an.vessel_scale * (0.08 + 0.22 * np.exp(-dist / 60.0))
    result: Mask = (np.abs(f1) < width) & (np.abs(f2) < width)
    return result


def _cavity_b(an: Anatomy) -> float:
    """Posterior half-axis of the thoracic cavity at chest level (no neck taper)."""
    return an.body_b - an.fat - an.muscle - 8


def _draw_mediastinum(
    hu: F32, labels: npt.NDArray[np.uint8], x: F32, y: F32, z: F32, an: Anatomy
) -> None:
    heart = _heart_field(x, y, z, an)
    hu[(heart <= 1.15) & (heart > 1.0)] = HU_FAT
    hu[heart <= 1.0] = HU_BLOOD + 10
    hu[heart <= 0.6] = HU_BLOOD
    top = 0.78 * an.lung_height
    b_cav0 = _cavity_b(an)
    desc = _ellipse(x, y, 24.0, 0.45 * b_cav0, 12.0, 12.0) <= 1
    asc = (_ellipse(x, y, 4.0, -18.0, 15.0, 15.0) <= 1) & (z > 0.35 * an.lung_height)
    arch = _tube((x, y, z), (4.0, -18.0, top), (24.0, 0.45 * b_cav0, top), 12.0)
    aorta = ((desc | asc) & (z < top)) | arch
    hu[aorta] = HU_BLOOD
    labels[aorta] = 0
    esophagus = _ellipse(x, y, -4.0, 0.3 * b_cav0 + 14, 9.0, 7.0) <= 1
    hu[esophagus & (z > 0)] = HU_MUSCLE
    lumen = _ellipse(x, y, -4.0, 0.3 * b_cav0 + 14, 2.5, 2.0) <= 1
    hu[lumen & (z > 0.4 * an.lung_height)] = HU_AIR
    labels[_full(esophagus, hu.shape)] = 0


def _draw_spine_sternum(
    hu: F32,
    labels: npt.NDArray[np.uint8],
    x: F32,
    y: F32,
    z: F32,
    an: Anatomy,
    b_cav: Any,
    b_body: Any,
) -> None:
    spine_y = _cavity_b(an) * 0.78
    vertebra = _ellipse(x, y, 0.0, spine_y, 20.0, 17.0)
    disc = np.mod(z, 28.0) < 5.0
    canal = _ellipse(x, y, 0.0, spine_y + 27, 8.0, 8.0) <= 1
    posterior = (np.abs(x) < 6) & (y > spine_y + 27) & (y < b_body - 25)
    lamina = (_ellipse(x, y, 0.0, spine_y + 27, 20.0, 14.0) <= 1) & ~canal
    bone = _full((vertebra <= 1) | posterior | lamina, hu.shape)
    canal = _full(canal, hu.shape)
    hu[bone] = HU_BONE
    hu[_full((vertebra <= 1) & (vertebra > 0.75), hu.shape)] = HU_CORTEX
    hu[(vertebra <= 1) & disc] = 85.0
    hu[canal] = 30.0
    labels[bone | canal] = 0
    sternum = (np.abs(x) < 16) & (np.abs(y + b_cav + 3) < 6) & (z > 0.15 * an.lung_height)
    sternum = np.broadcast_to(sternum, hu.shape)
    hu[sternum & (z < an.lung_height)] = HU_BONE
    labels[sternum] = 0


def _draw_abdomen(
    hu: F32,
    x: F32,
    y: F32,
    z: F32,
    a_cav: Any,
    b_cav: Any,
    an: Anatomy,
    labels: npt.NDArray[np.uint8],
) -> None:
    below = (labels == 0) & (_ellipse(x, y, 0.0, 2.0, a_cav, b_cav) <= 1)
    liver = below & (
        ((x + 25) / 120) ** 2 + ((y + 5) / 95) ** 2 + ((z - an.dome_right + 95) / 100) ** 2 <= 1
    )
    hu[liver] = HU_LIVER
    stomach = below & (
        ((x - 60) / 50) ** 2 + ((y + 25) / 45) ** 2 + ((z - an.dome_left + 45) / 45) ** 2 <= 1
    )
    hu[stomach] = 25.0
    below_left = z < _diaphragm(x, y, 1.0, an.dome_left, a_cav, b_cav, an) - 8
    gas = stomach & below_left & (z > an.dome_left - 40) & (y < -15)
    hu[gas] = HU_AIR


def _tube(
    coords: tuple[F32, F32, F32],
    p0: tuple[float, float, float],
    p1: tuple[float, float, float],
    radius: float,
) -> Mask:
    """Voxels within ``radius`` mm of the segment p0-p1 (computed in its bounding box)."""
    x, y, z = coords
    shape = (z.shape[0], y.shape[1], x.shape[2])
    out = np.zeros(shape, dtype=bool)
    box = []
    for axis_values, a, b in (
        (z.ravel(), p0[2], p1[2]),
        (y.ravel(), p0[1], p1[1]),
        (x.ravel(), p0[0], p1[0]),
    ):
        inside = np.nonzero(
            (axis_values >= min(a, b) - radius) & (axis_values <= max(a, b) + radius)
        )[0]
        if inside.size == 0:
            return out
        box.append(slice(int(inside[0]), int(inside[-1]) + 1))
    bz, by, bx = box
    dist = _segment_distance(x[:, :, bx], y[:, by, :], z[bz], p0, p1)
    out[bz, by, bx] = dist <= radius
    return out


def _segment_distance(
    x: F32, y: F32, z: F32, p0: tuple[float, float, float], p1: tuple[float, float, float]
) -> Any:
    d = np.subtract(p1, p0)
    length2 = float(np.dot(d, d))
    t = ((x - p0[0]) * d[0] + (y - p0[1]) * d[1] + (z - p0[2]) * d[2]) / length2
    t = np.clip(t, 0, 1)
    return np.sqrt(
        (x - p0[0] - t * d[0]) ** 2 + (y - p0[1] - t * d[1]) ** 2 + (z - p0[2] - t * d[2]) ** 2
    )


def _draw_airways(
    hu: F32, labels: npt.NDArray[np.uint8], x: F32, y: F32, z: F32, an: Anatomy
) -> None:
    """Trachea + main bronchi (walled, not lung) and open lobar bronchi inside each lung."""
    top = float(z.max()) + 10
    ty = 0.3 * _cavity_b(an) - 12
    carina = (0.0, ty, an.carina_frac * an.lung_height)
    hila = {
        RIGHT_LUNG: (-(an.med_half_width + 16), ty + 8, carina[2] - 22),
        LEFT_LUNG: (an.med_half_width + 20, ty + 8, carina[2] - 40),
    }
    r = an.trachea_radius
    segments = [((0.0, ty, top), carina, r)]
    segments += [(carina, hila[RIGHT_LUNG], 0.68 * r), (carina, hila[LEFT_LUNG], 0.62 * r)]
    coords = (x, y, z)
    wall = np.zeros(hu.shape, dtype=bool)
    lumen = np.zeros(hu.shape, dtype=bool)
    for p0, p1, radius in segments:
        lumen |= _tube(coords, p0, p1, radius)
        wall |= _tube(coords, p0, p1, radius + 2.0)
    hu[wall] = HU_MUSCLE
    labels[wall] = 0
    for label, hilum in hila.items():
        side = -1.0 if label == RIGHT_LUNG else 1.0
        for dx, dy, dz in ((18, -14, 22), (24, 10, -26), (16, 22, -6)):
            end = (hilum[0] + side * dx, hilum[1] + dy, hilum[2] + dz)
            in_lung = labels == label
            hu[_tube(coords, hilum, end, 4.6) & in_lung] = HU_MUSCLE
            hu[_tube(coords, hilum, end, 3.2) & in_lung] = HU_AIR
    hu[lumen] = HU_AIR
