"""Resampling used by assembly decisions: in-plane shear (gantry tilt) and uniform z spacing.

Both are linear interpolations that keep every voxel's patient-space position: an in-plane
shift moves each slice along its own row/column cosines (so the slice stays in its plane), and
z resampling interpolates between the two neighbouring slices along the normal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Int16Array = npt.NDArray[np.int16]
Float32Array = npt.NDArray[np.float32]
_EXACT = 1e-6


def _translate(image: Float32Array, steps: int, axis: int, fill: float) -> Float32Array:
    """``out[j] = image[j - steps]`` along ``axis``; vacated voxels get ``fill``."""
    result = np.full_like(image, fill)
    size = image.shape[axis]
    if abs(steps) >= size:
        return result
    src = [slice(None)] * image.ndim
    dst = [slice(None)] * image.ndim
    if steps >= 0:
        dst[axis], src[axis] = slice(steps, size), slice(0, size - steps)
    else:
        dst[axis], src[axis] = slice(0, size + steps), slice(-steps, size)
    result[tuple(dst)] = image[tuple(src)]
    return result


def _shift_axis(image: Float32Array, shift: float, axis: int, fill: float) -> Float32Array:
    """``out[j] = image(j - shift)`` with linear interpolation along ``axis``."""
    whole = math.floor(shift)
    frac = shift - whole
    if frac < _EXACT:
        return _translate(image, whole, axis, fill)
    if frac > 1 - _EXACT:
        return _translate(image, whole + 1, axis, fill)
    near = _translate(image, whole, axis, fill)
    far = _translate(image, whole + 1, axis, fill)
    near *= np.float32(1 - frac)
    near += np.float32(frac) * far
    return near


def shift_slice(
    src: Int16Array, out: Int16Array, shift_x: float, shift_y: float, fill: int
) -> None:
    """Place ``src`` in the larger ``out`` moved by (shift_x, shift_y) pixels (both >= 0)."""
    canvas = np.full(out.shape, np.float32(fill), dtype=np.float32)
    canvas[: src.shape[0], : src.shape[1]] = src
    canvas = _shift_axis(canvas, shift_y, 0, fill)
    canvas = _shift_axis(canvas, shift_x, 1, fill)
    np.rint(canvas, out=canvas)
    out[...] = canvas


def resample_z(
    stack: Int16Array, distances: Sequence[float], targets: Sequence[float]
) -> Int16Array:
    """Slices at ``targets`` interpolated linearly between slices at sorted ``distances``."""
    source = np.asarray(distances, dtype=np.float64)
    out = np.empty((len(targets), *stack.shape[1:]), dtype=np.int16)
    last = len(source) - 1
    for index, target in enumerate(targets):
        below = int(np.clip(np.searchsorted(source, target, side="right") - 1, 0, max(0, last - 1)))
        above = min(below + 1, last)
        span = source[above] - source[below]
        weight = 0.0 if span <= 0 else (target - source[below]) / span
        if weight < _EXACT:
            out[index] = stack[below]
        elif weight > 1 - _EXACT:
            out[index] = stack[above]
        else:
            mixed = stack[below].astype(np.float32) * np.float32(1 - weight)
            mixed += stack[above].astype(np.float32) * np.float32(weight)
            np.rint(mixed, out=mixed)
            out[index] = mixed
    return out
