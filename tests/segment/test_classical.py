"""Classical lung segmentation on phantoms with ground truth and on edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from covidct_core.errors import PermanentError
from covidct_core.phantom import LEFT_LUNG, RIGHT_LUNG, PhantomOptions, make_chest_phantom
from covidct_core.volume_io import Volume
from covidct_segment.classical import (
    ClassicalParams,
    dice,
    segment_lungs_classical,
)
from tests.segment.conftest import Phantom


def test_dice() -> None:
    a = np.zeros((4, 4, 4), np.uint8)
    b = np.zeros((4, 4, 4), np.uint8)
    assert dice(a, b) == 1.0
    a[0] = 1
    assert dice(a, b) == 0.0
    b[0, :2] = 1
    assert dice(a, b) == pytest.approx(2 * 8 / (16 + 8))


@pytest.mark.parametrize("which", ["phantom", "thick_flipped_phantom"])
def test_phantom_dice_and_sides(which: str, request: pytest.FixtureRequest) -> None:
    phantom: Phantom = request.getfixturevalue(which)
    result = segment_lungs_classical(phantom.volume)
    assert dice(result.mask, phantom.lung) >= 0.95
    assert result.lungs_found == 2
    for label in (RIGHT_LUNG, LEFT_LUNG):
        assert dice(result.labels == label, phantom.labels == label) > 0.9


def test_trachea_and_main_bronchi_removed(phantom: Phantom) -> None:
    result = segment_lungs_classical(phantom.volume)
    assert 5 < result.airway_ml < 120
    hu = phantom.volume.array
    voxel_ml = float(np.prod(phantom.volume.spacing)) / 1000
    airway_air = (hu < -900) & (phantom.lung == 0)  # trachea, bronchi, gas, outside air
    leaked_ml = float(((result.mask > 0) & airway_air).sum()) * voxel_ml
    assert leaked_ml < 3.0
    # without the airway step, the trachea would be kept as lung
    no_airway = ClassicalParams(airway_start_hu=-2000.0, airway_stop_hu=-2000.0)
    kept = segment_lungs_classical(phantom.volume, no_airway)
    assert float(((kept.mask > 0) & airway_air).sum()) * voxel_ml > leaked_ml + 5.0


def test_stomach_gas_is_not_lung(phantom: Phantom) -> None:
    hu = phantom.volume.array
    result = segment_lungs_classical(phantom.volume)
    below_lungs = slice(0, int(np.nonzero(phantom.lung.any(axis=(1, 2)))[0][0]))
    gas = hu[below_lungs] < -900
    assert gas.sum() > 0  # the stomach bubble (and colon) exists in the phantom
    assert result.mask[below_lungs].sum() == 0


def test_no_lung_found() -> None:
    tissue = Volume(np.full((40, 64, 64), 40, np.int16), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    with pytest.raises(PermanentError) as info:
        segment_lungs_classical(tissue)
    assert info.value.code == "NO_LUNG_FOUND"
    air = Volume(np.full((40, 64, 64), -1000, np.int16), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    with pytest.raises(PermanentError):
        segment_lungs_classical(air)


def test_pure_air_pocket_is_rejected() -> None:
    """A large air bubble (gas, median ~ -1000 HU) inside a body is not a lung."""
    hu = np.full((50, 80, 80), -1000, np.int16)
    hu[:, 10:70, 10:70] = 40
    hu[10:40, 25:55, 25:55] = -1000
    volume = Volume(hu, (3.0, 3.0, 3.0), (0.0, 0.0, 0.0))
    with pytest.raises(PermanentError):
        segment_lungs_classical(volume)


def test_coarse_spacing() -> None:
    phantom = make_chest_phantom(12, PhantomOptions(spacing=(4.0, 4.0, 8.0)))
    result = segment_lungs_classical(phantom.volume)
    assert dice(result.mask, phantom.lung_mask) >= 0.93


def test_dilation_in_the_box_equals_the_whole_array_dilation() -> None:
    """Exact: masks in the middle, at every border, anisotropic balls, and empty."""
    from scipy import ndimage

    from covidct_segment.classical import _ball, dilate_in_box

    rng = np.random.default_rng(3)
    balls = [_ball(2.0, (2.5, 0.7, 0.7)), _ball(4.0, (1.0, 1.0, 1.0)), _ball(1.0, (3.0, 3.0, 3.0))]
    for case in range(12):
        mask = np.zeros((20, 40, 30), bool)
        z, y, x = rng.integers(0, 15), rng.integers(0, 35), rng.integers(0, 25)
        if case % 4 == 1:
            z, y, x = 0, 0, 0  # at the low borders
        if case % 4 == 2:
            z, y, x = 15, 35, 25  # at the high borders
        if case % 4 != 3:
            mask[z : z + 5, y : y + 5, x : x + 5] = rng.random((5, 5, 5)) < 0.4
        structure = balls[case % len(balls)]
        expected = ndimage.binary_dilation(mask, structure=structure)
        assert np.array_equal(dilate_in_box(mask, structure), expected)
