"""Synthetic chest CT phantoms in Hounsfield units with a known lung mask.

The phantom is drawn in patient coordinates (millimetres, LPS: +x = patient left,
+y = posterior, +z = superior) relative to the centre of the chest, then sampled on an
ITK-style grid. It has a body with fat and muscle, ribs, spine and sternum, two lungs with
vessels and a gravity gradient, mediastinum, heart, aorta, trachea and main bronchi (air
that is NOT lung), liver and stomach with a gas bubble below the diaphragm, and a table.

Composable: ``painters`` are called on the noise-free HU canvas before blur and noise, so a
caller can add lesions inside ``canvas.lung_labels`` (1 = right lung, 2 = left lung).
Everything is drawn from ``seed``; the same seed and options give the same voxels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from covidct_core.phantom_anatomy import (
    F32,
    LEFT_LUNG,
    RIGHT_LUNG,
    Mask,
    random_anatomy,
    render,
)
from covidct_core.volume_io import Volume

__all__ = [
    "LEFT_LUNG",
    "RIGHT_LUNG",
    "ChestPhantom",
    "Painter",
    "PhantomCanvas",
    "PhantomOptions",
    "make_chest_phantom",
    "random_phantom_options",
]

MAX_RENDER_STEP_MM = 1.6


@dataclass(frozen=True)
class PhantomOptions:
    """Acquisition and appearance of a phantom. Spacing is (x, y, z) in mm."""

    spacing: tuple[float, float, float] = (1.5, 1.5, 3.0)
    fov_mm: float = 400.0
    z_extent_mm: float = 320.0
    noise_hu: float = 18.0
    hu_scale: float = 1.0
    hu_offset: float = 0.0
    flip_axes: tuple[bool, bool, bool] = (False, False, False)
    fov_pad_value: int | None = None
    table: bool = True
    arms: bool = False
    anatomy_jitter: float = 1.0
    center_offset_mm: tuple[float, float] = (0.0, 0.0)


@dataclass
class PhantomCanvas:
    """The noise-free render passed to painters (arrays are z, y, x on the render grid)."""

    hu: F32
    lung_labels: npt.NDArray[np.uint8]
    body: Mask
    spacing: tuple[float, float, float]
    coords: tuple[F32, F32, F32]
    rng: np.random.Generator
    extras: dict[str, Any] = field(default_factory=dict)


Painter = Callable[[PhantomCanvas], None]


class ChestPhantom(NamedTuple):
    """A phantom volume (int16 HU) and its ground truth on the same grid."""

    volume: Volume
    lung_mask: npt.NDArray[np.uint8]
    body_mask: npt.NDArray[np.uint8]
    lung_labels: npt.NDArray[np.uint8]


def random_phantom_options(rng: np.random.Generator) -> PhantomOptions:
    """Options for training augmentation: spacing, FOV, noise, intensity, flips, padding."""
    inplane = float(rng.uniform(0.9, 2.0))
    return PhantomOptions(
        spacing=(inplane, inplane, float(rng.choice([1.25, 2.0, 2.5, 3.0, 5.0, 8.0]))),
        fov_mm=float(rng.uniform(340, 480)),
        z_extent_mm=float(rng.uniform(240, 380)),
        noise_hu=float(rng.uniform(4, 60)),
        hu_scale=float(rng.uniform(0.94, 1.06)),
        hu_offset=float(rng.uniform(-25, 25)),
        flip_axes=(bool(rng.random() < 0.2), bool(rng.random() < 0.2), bool(rng.random() < 0.2)),
        fov_pad_value=int(rng.choice([-2048, -3024])) if rng.random() < 0.3 else None,
        table=bool(rng.random() < 0.85),
        arms=bool(rng.random() < 0.3),
        anatomy_jitter=1.0,
        center_offset_mm=(float(rng.uniform(-25, 25)), float(rng.uniform(-30, 20))),
    )


def make_chest_phantom(
    seed: int, options: PhantomOptions | None = None, painters: Sequence[Painter] = ()
) -> ChestPhantom:
    """Draw a chest phantom. Returns (volume int16 HU, lung mask, body mask, lung labels)."""
    opts = options or PhantomOptions()
    rng = np.random.default_rng(seed)
    anatomy = random_anatomy(rng, opts.anatomy_jitter)
    out_shape, render_factor = _grid(opts)
    render_spacing = (opts.spacing[0], opts.spacing[1], opts.spacing[2] / render_factor)
    render_shape = (out_shape[0] * render_factor, out_shape[1], out_shape[2])
    origin = (
        -opts.fov_mm / 2 + opts.center_offset_mm[0],
        -opts.fov_mm / 2 + opts.center_offset_mm[1],
        -anatomy.z_low,
    )
    coords = _coords(render_shape, render_spacing, origin)
    hu, labels, body = render(anatomy, opts.arms, opts.table, coords, render_spacing, rng)
    canvas = PhantomCanvas(hu, labels, body, render_spacing, coords, rng)
    for painter in painters:
        painter(canvas)
    hu = _blur(canvas.hu, render_spacing)
    if render_factor > 1:
        hu = _zmean(hu, render_factor)
        labels = _zlabel_vote(canvas.lung_labels, render_factor)
        body = _zmean(canvas.body.astype(np.float32), render_factor) >= 0.5
    else:
        labels, body = canvas.lung_labels, canvas.body
    hu = hu * opts.hu_scale + opts.hu_offset
    hu += rng.normal(0.0, opts.noise_hu, size=hu.shape).astype(np.float32)
    out_origin = (origin[0], origin[1], origin[2] + (render_factor - 1) * render_spacing[2] / 2)
    volume_hu = _to_int16(hu, opts)
    return _flip(
        volume_hu, labels.astype(np.uint8), body.astype(np.uint8), opts.spacing, out_origin, opts
    )


def _grid(opts: PhantomOptions) -> tuple[tuple[int, int, int], int]:
    nx = max(8, round(opts.fov_mm / opts.spacing[0]))
    ny = max(8, round(opts.fov_mm / opts.spacing[1]))
    nz = max(2, round(opts.z_extent_mm / opts.spacing[2]))
    factor = max(1, math.ceil(opts.spacing[2] / MAX_RENDER_STEP_MM))
    return (nz, ny, nx), factor


def _coords(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    origin: tuple[float, float, float],
) -> tuple[F32, F32, F32]:
    nz, ny, nx = shape
    x = (origin[0] + spacing[0] * np.arange(nx)).astype(np.float32)[None, None, :]
    y = (origin[1] + spacing[1] * np.arange(ny)).astype(np.float32)[None, :, None]
    z = (origin[2] + spacing[2] * np.arange(nz)).astype(np.float32)[:, None, None]
    return x, y, z


def _blur(hu: F32, spacing: tuple[float, float, float]) -> F32:
    sigma = [0.7 / spacing[2], 0.6 / spacing[1], 0.6 / spacing[0]]
    blurred: F32 = ndimage.gaussian_filter(hu, sigma=sigma, truncate=3.0).astype(np.float32)
    return blurred


def _zmean(values: F32, factor: int) -> F32:
    nz = values.shape[0] // factor
    mean: F32 = values.reshape(nz, factor, *values.shape[1:]).mean(axis=1).astype(np.float32)
    return mean


def _zlabel_vote(labels: npt.NDArray[np.uint8], factor: int) -> npt.NDArray[np.uint8]:
    right = _zmean((labels == RIGHT_LUNG).astype(np.float32), factor)
    left = _zmean((labels == LEFT_LUNG).astype(np.float32), factor)
    out = np.zeros(right.shape, dtype=np.uint8)
    out[(right >= 0.5) & (right >= left)] = RIGHT_LUNG
    out[(left >= 0.5) & (left > right)] = LEFT_LUNG
    return out


def _to_int16(hu: F32, opts: PhantomOptions) -> npt.NDArray[np.int16]:
    out = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    if opts.fov_pad_value is not None:
        _, ny, nx = out.shape
        yy = (np.arange(ny) - (ny - 1) / 2)[:, None] * opts.spacing[1]
        xx = (np.arange(nx) - (nx - 1) / 2)[None, :] * opts.spacing[0]
        outside = np.sqrt(xx**2 + yy**2) > 0.5 * opts.fov_mm
        out[:, outside] = opts.fov_pad_value
    return out


def _flip(
    hu: npt.NDArray[np.int16],
    labels: npt.NDArray[np.uint8],
    body: npt.NDArray[np.uint8],
    spacing: tuple[float, float, float],
    origin: tuple[float, float, float],
    opts: PhantomOptions,
) -> ChestPhantom:
    """Store flipped axes with a matching direction so the patient geometry is unchanged."""
    direction = np.eye(3)
    new_origin = list(origin)
    for axis_xyz, flip in enumerate(opts.flip_axes):
        if not flip:
            continue
        axis_zyx = 2 - axis_xyz
        n = hu.shape[axis_zyx]
        hu = np.flip(hu, axis=axis_zyx)
        labels = np.flip(labels, axis=axis_zyx)
        body = np.flip(body, axis=axis_zyx)
        new_origin[axis_xyz] += (n - 1) * spacing[axis_xyz]
        direction[axis_xyz, axis_xyz] = -1.0
    lung = (labels > 0).astype(np.uint8)
    volume = Volume(
        np.ascontiguousarray(hu),
        spacing,
        (float(new_origin[0]), float(new_origin[1]), float(new_origin[2])),
        tuple(float(v) for v in direction.ravel()),
    )
    return ChestPhantom(
        volume,
        np.ascontiguousarray(lung),
        np.ascontiguousarray(body),
        np.ascontiguousarray(labels),
    )
