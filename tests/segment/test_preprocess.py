"""Orientation, resampling to the model grid, and restoring a mask onto the input grid."""

from __future__ import annotations

import numpy as np
import pytest

from covidct_core.volume_io import Volume
from covidct_segment.postprocess import clean_lung_mask, largest_components
from covidct_segment.preprocess import (
    Preprocessing,
    from_canonical,
    model_grid,
    orientation_of,
    resample_hu,
    resample_mask_to_grid,
    restore_mask,
    to_canonical,
    window,
)

FLIP_X_Z = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
# array x runs along patient y, array y along patient x (a transposed in-plane layout)
SWAP_XY = (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


def _volume(direction: tuple[float, ...], shape: tuple[int, int, int] = (10, 12, 14)) -> Volume:
    array = np.arange(np.prod(shape), dtype=np.int16).reshape(shape)
    return Volume(array, (0.7, 0.8, 2.5), (1.0, 2.0, 3.0), direction)


@pytest.mark.parametrize("direction", [FLIP_X_Z, SWAP_XY])
def test_canonical_view_round_trip(direction: tuple[float, ...]) -> None:
    volume = _volume(direction)
    orientation = orientation_of(volume)
    canonical = to_canonical(volume.array, orientation)
    assert np.array_equal(from_canonical(canonical, orientation), volume.array)
    # canonical index (k, j, i) increases along patient z, y, x
    origin_value = canonical[0, 0, 0]
    z, y, x = np.argwhere(volume.array == origin_value)[0]
    low = volume.index_to_physical([x, y, z])
    nz, ny, nx = canonical.shape
    far_value = canonical[nz - 1, ny - 1, nx - 1]
    z, y, x = np.argwhere(volume.array == far_value)[0]
    high = volume.index_to_physical([x, y, z])
    assert np.all(high > low)


def test_swapped_axes_spacing_follows_the_patient_axes() -> None:
    orientation = orientation_of(_volume(SWAP_XY))
    # array x (0.7 mm) runs along patient y, array y (0.8 mm) along patient x
    assert orientation.spacing_zyx == (2.5, 0.7, 0.8)


def test_model_grid_and_exact_restore() -> None:
    volume = _volume(FLIP_X_Z, shape=(33, 100, 90))
    grid = model_grid(volume, Preprocessing())
    assert grid.shape == (round(33 * 2.5 / 2), 40, round(90 * 0.7 / 2))
    hu = resample_hu(volume, grid)
    assert tuple(hu.shape) == (1, 1, *grid.shape)
    mask = np.zeros(volume.array.shape, np.uint8)
    mask[5:25, 20:80, 10:60] = 1
    on_grid = resample_mask_to_grid(mask, grid)
    back = restore_mask(on_grid, grid)
    assert back.shape == volume.array.shape and back.dtype == np.uint8
    overlap = 2 * (back & mask).sum() / (back.sum() + mask.sum())
    assert overlap > 0.95


@pytest.mark.parametrize("direction", [FLIP_X_Z, SWAP_XY, (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)])
def test_restore_equals_full_nearest_interpolation(direction: tuple[float, ...]) -> None:
    """Restoring only the mask's bounding box gives what nearest-exact interpolation of the
    whole grid gives, in every orientation (upsampling and downsampling axes)."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(7)
    volume = _volume(direction, shape=(41, 37, 90))
    grid = model_grid(volume, Preprocessing())
    for box in [(slice(2, 9), slice(3, 11), slice(1, 12)), (slice(None),) * 3, None]:
        mask = np.zeros(grid.shape, np.uint8)
        if box is not None:
            mask[box] = rng.random(mask[box].shape) < 0.6
        tensor = torch.from_numpy(mask)[None, None]
        full = F.interpolate(tensor, size=grid.canonical_shape, mode="nearest-exact")[0, 0]
        expected = from_canonical(full.numpy(), grid.orientation)
        restored = restore_mask(mask, grid)
        assert restored.flags.c_contiguous and restored.shape == volume.array.shape
        assert np.array_equal(restored, expected)


def test_window_maps_hu_to_unit_range() -> None:
    import torch

    hu = torch.tensor([-3000.0, -1000.0, -250.0, 500.0, 2000.0])
    out = window(hu, Preprocessing())
    assert out.tolist() == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])


def test_postprocess_keeps_two_lungs_drops_specks_fills_holes() -> None:
    mask = np.zeros((30, 40, 60), np.uint8)
    mask[5:25, 5:35, 5:25] = 1
    mask[5:25, 5:35, 35:55] = 1
    mask[15, 20, 15] = 0  # a hole (vessel)
    mask[1, 1, 1] = 1  # a speck
    parts = largest_components(mask > 0)
    assert len(parts) == 2
    cleaned = clean_lung_mask(mask, (2.0, 2.0, 2.0))
    assert cleaned[15, 20, 15] == 1 and cleaned[1, 1, 1] == 0
    assert cleaned.sum() == 2 * 20 * 30 * 20
