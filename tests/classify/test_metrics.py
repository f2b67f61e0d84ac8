from __future__ import annotations

import numpy as np
import pytest

from covidct_classify.lung_geometry import lung_geometry
from covidct_classify.metrics import (
    LUNG_TRUNCATED,
    LUNG_VOLUME_OUT_OF_RANGE,
    lung_metrics,
    metric_qa_flags,
)
from covidct_classify.synthetic import insert_covid_findings
from covidct_core.errors import PermanentError
from tests.classify.conftest import PhantomLungs


def test_exact_counts_on_a_constructed_lung() -> None:
    hu = np.full((10, 20, 20), 40, dtype=np.int16)
    mask = np.zeros(hu.shape, dtype=bool)
    mask[2:8, 5:15, 5:15] = True  # 600 voxels
    hu[mask] = -850
    lung_idx = np.flatnonzero(mask)
    hu.flat[lung_idx[:60]] = -500  # GGO: opacity only
    hu.flat[lung_idx[60:90]] = 0  # consolidation: opacity and high opacity
    hu.flat[lung_idx[90:96]] = -700  # exactly on the opacity threshold counts
    hu.flat[lung_idx[96:99]] = -200  # exactly on the high-opacity threshold counts
    metrics = lung_metrics(hu, mask, (0.5, 0.5, 2.0))
    assert metrics.lung_volume_ml == pytest.approx(600 * 0.5 / 1000)
    assert metrics.percent_opacity == pytest.approx(100 * 99 / 600)
    assert metrics.percent_high_opacity == pytest.approx(100 * 33 / 600)
    expected_mean = (501 * -850 + 60 * -500 + 30 * 0 + 6 * -700 + 3 * -200) / 600
    assert metrics.mean_lung_hu == pytest.approx(expected_mean)


def test_inserted_fractions_are_measured_on_a_phantom(phantom: PhantomLungs) -> None:
    v = phantom.volume
    before = lung_metrics(v.array, phantom.mask, v.spacing)
    geometry = lung_geometry(phantom.mask, v.spacing, v.direction)
    hu = v.array.astype(np.float32)
    for fraction in (0.05, 0.2):
        rng = np.random.default_rng(7)
        dense, _ = insert_covid_findings(hu, geometry, fraction, rng, consolidation_share=1.0)
        after = lung_metrics(dense, phantom.mask, v.spacing)
        base_rate = before.percent_high_opacity / 100
        expected = 100 * (fraction + (1 - fraction) * base_rate)
        # blended lesion borders add a little on top of the painted fraction
        assert expected - 0.5 <= after.percent_high_opacity <= expected * 1.25 + 0.5
        assert after.percent_opacity >= after.percent_high_opacity
        assert after.lung_volume_ml == before.lung_volume_ml


def test_ggo_counts_as_opacity_not_high_opacity(phantom: PhantomLungs) -> None:
    v = phantom.volume
    geometry = lung_geometry(phantom.mask, v.spacing, v.direction)
    hu = v.array.astype(np.float32)
    before = lung_metrics(hu, phantom.mask, v.spacing)
    lung_idx = np.flatnonzero(phantom.mask & (hu < -750))
    chosen = np.random.default_rng(0).choice(lung_idx, size=len(lung_idx) // 5, replace=False)
    ggo = hu.copy()
    ggo.flat[chosen] = -450.0
    after = lung_metrics(ggo, phantom.mask, v.spacing)
    added = 100 * len(chosen) / int(phantom.mask.sum())
    assert after.percent_opacity == pytest.approx(before.percent_opacity + added, abs=1e-6)
    assert after.percent_high_opacity == pytest.approx(before.percent_high_opacity, abs=1e-6)
    assert geometry.lung_voxels == int(phantom.mask.sum())


def test_phantom_lung_volume_matches_mask(phantom: PhantomLungs) -> None:
    v = phantom.volume
    metrics = lung_metrics(v.array, phantom.mask, v.spacing)
    assert metrics.lung_volume_ml == pytest.approx(phantom.mask.sum() * 2 * 2 * 4 / 1000)
    assert 1500 < metrics.lung_volume_ml < 8000
    assert metrics.percent_opacity < 15  # vessels and borders only
    assert -900 < metrics.mean_lung_hu < -700


def test_qa_flags() -> None:
    mask = np.zeros((10, 20, 20), dtype=bool)
    mask[2:8, 5:15, 5:15] = True
    small = lung_metrics(np.full(mask.shape, -850), mask, (1.0, 1.0, 1.0))
    assert metric_qa_flags(small, mask) == [LUNG_VOLUME_OUT_OF_RANGE]
    normal = lung_metrics(np.full(mask.shape, -850), mask, (10.0, 10.0, 50.0))
    assert metric_qa_flags(normal, mask) == []
    mask[0] = True
    assert LUNG_TRUNCATED in metric_qa_flags(normal, mask)


def test_errors() -> None:
    with pytest.raises(PermanentError) as info:
        lung_metrics(np.zeros((4, 4, 4)), np.zeros((4, 4, 4), dtype=bool), (1.0, 1.0, 1.0))
    assert info.value.code == "NO_LUNG_FOUND"
    with pytest.raises(PermanentError) as info:
        lung_metrics(np.zeros((4, 4, 4)), np.ones((4, 4, 5), dtype=bool), (1.0, 1.0, 1.0))
    assert info.value.code == "MASK_GRID_MISMATCH"
