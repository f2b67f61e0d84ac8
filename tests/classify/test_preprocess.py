from __future__ import annotations

import numpy as np
import pytest

from covidct_classify.preprocess import (
    PreprocessConfig,
    crop_and_resize,
    lung_bounding_box,
    preprocess,
    window_hu,
)
from covidct_core.errors import PermanentError


def _box_case() -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """A 40 x 60 x 80 (z, y, x) volume with a lung block and an x gradient inside it."""
    hu = np.full((40, 60, 80), 40, dtype=np.int16)
    mask = np.zeros(hu.shape, dtype=bool)
    mask[10:30, 15:45, 20:70] = True
    gradient = np.linspace(-1000, 500, 50).astype(np.int16)
    hu[10:30, 15:45, 20:70] = gradient[None, None, :]
    return hu, mask, (1.0, 1.0, 2.0)


def test_clara_defaults() -> None:
    config = PreprocessConfig()
    assert config.spatial_size == (192, 192, 64)
    assert config.hu_window == (-1000.0, 500.0)
    assert config.in_channels == 2


def test_two_channel_input_shape_range_and_mask() -> None:
    hu, mask, spacing = _box_case()
    x = preprocess(hu, mask, spacing, PreprocessConfig())
    assert x.shape == (2, 192, 192, 64)
    assert x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert set(np.unique(x[1]).tolist()) <= {0.0, 1.0}
    # default 10 mm margin: z 20 of 30 slices, y 30 of 50 rows, x 50 of 70 columns are lung
    assert x[1].mean() == pytest.approx((20 / 30) * (30 / 50) * (50 / 70), abs=0.01)


def test_one_channel_input() -> None:
    hu, mask, spacing = _box_case()
    x = preprocess(hu, mask, spacing, PreprocessConfig(in_channels=1))
    assert x.shape == (1, 192, 192, 64)


def test_spatial_axes_are_x_y_z() -> None:
    hu, mask, spacing = _box_case()
    x = preprocess(hu, mask, spacing, PreprocessConfig(margin_mm=0.0))
    # the HU gradient runs along array x; in the network input it must run along axis 1
    profile = x[0].mean(axis=(1, 2))
    assert profile[-1] > profile[0] + 0.8
    assert np.all(np.diff(profile) >= -1e-6)
    across = x[0].mean(axis=(0, 2))
    assert np.ptp(across) < 0.05


def test_crop_margin_in_mm() -> None:
    _, mask, spacing = _box_case()
    box = lung_bounding_box(mask, spacing, margin_mm=4.0)
    # 4 mm = 2 slices at 2 mm in z, 4 voxels at 1 mm in y and x
    assert box == (slice(8, 32), slice(11, 49), slice(16, 74))
    clamped = lung_bounding_box(mask, spacing, margin_mm=100.0)
    assert clamped == (slice(0, 40), slice(0, 60), slice(0, 80))


def test_crop_and_resize_reports_new_spacing() -> None:
    hu, mask, spacing = _box_case()
    cropped = crop_and_resize(hu, mask, spacing, PreprocessConfig(margin_mm=0.0))
    assert cropped.hu.shape == (64, 192, 192)
    assert cropped.spacing == pytest.approx((50 / 192, 30 / 192, 2.0 * 20 / 64))


def test_window() -> None:
    values = window_hu(np.array([-3000, -1000, -250, 500, 2000]), (-1000.0, 500.0))
    assert values.tolist() == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])


def test_empty_mask_is_permanent() -> None:
    hu, mask, spacing = _box_case()
    with pytest.raises(PermanentError) as info:
        preprocess(hu, np.zeros_like(mask), spacing, PreprocessConfig())
    assert info.value.code == "NO_LUNG_FOUND"


def test_config_from_metadata_and_validation() -> None:
    metadata = {
        "network_data_format": {
            "inputs": {"image": {"num_channels": 1, "spatial_shape": [96, 96, 32]}},
            "preprocessing": {"hu_window": [-1200, 600], "margin_mm": 5},
        }
    }
    config = PreprocessConfig.from_metadata(metadata)
    assert config == PreprocessConfig((96, 96, 32), (-1200.0, 600.0), 5.0, 1)
    with pytest.raises(ValueError):
        PreprocessConfig(in_channels=3)
