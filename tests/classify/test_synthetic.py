from __future__ import annotations

import numpy as np
import pytest

from covidct_classify.lung_geometry import lung_geometry, smooth_noise, top_fraction
from covidct_classify.synthetic import (
    CONSOLIDATION,
    CRAZY_PAVING,
    GGO,
    CaseSpec,
    Confounder,
    add_basal_atelectasis,
    add_dependent_density,
    add_emphysema,
    add_nodule,
    insert_covid_findings,
    lesion_fractions,
    random_case_spec,
    synthesize_volume,
)
from tests.classify.conftest import PhantomLungs


@pytest.fixture(scope="module")
def geometry(phantom: PhantomLungs):  # type: ignore[no-untyped-def]
    v = phantom.volume
    return lung_geometry(phantom.mask, v.spacing, v.direction)


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.5])
def test_requested_fraction_in_each_lung(phantom: PhantomLungs, geometry, fraction: float) -> None:  # type: ignore[no-untyped-def]
    hu = phantom.volume.array.astype(np.float32)
    _, labels = insert_covid_findings(hu, geometry, fraction, np.random.default_rng(1))
    assert lesion_fractions(labels, phantom.mask)["total"] == pytest.approx(fraction, rel=0.02)
    for side in (1, 2):
        in_side = geometry.side == side
        assert (labels[in_side] > 0).mean() == pytest.approx(fraction, rel=0.02)
    assert not (labels[~phantom.mask] > 0).any()


def test_lesions_are_peripheral_and_basal(phantom: PhantomLungs, geometry) -> None:  # type: ignore[no-untyped-def]
    hu = phantom.volume.array.astype(np.float32)
    _, labels = insert_covid_findings(hu, geometry, 0.1, np.random.default_rng(2))
    lesion = labels > 0
    lung = geometry.mask
    assert geometry.distance_mm[lesion].mean() < 0.6 * geometry.distance_mm[lung].mean()
    assert geometry.height[lesion].mean() < geometry.height[lung].mean() - 0.1
    lower = geometry.height < 0.5
    assert lesion[lung & lower].mean() > 2 * lesion[lung & ~lower].mean()


def test_lesion_hu_by_kind(phantom: PhantomLungs, geometry) -> None:  # type: ignore[no-untyped-def]
    hu = phantom.volume.array.astype(np.float32)
    painted, labels = insert_covid_findings(
        hu, geometry, 0.3, np.random.default_rng(3), consolidation_share=0.3, crazy_paving_share=0.3
    )
    fractions = lesion_fractions(labels, phantom.mask)
    assert fractions["consolidation"] == pytest.approx(0.09, rel=0.05)
    assert fractions["crazy_paving"] == pytest.approx(0.09, rel=0.05)
    assert fractions["ggo"] == pytest.approx(0.12, rel=0.05)
    # texture (noise, vessels) is kept, so look at medians and inner percentiles
    ggo = painted[labels == GGO]
    assert -750 <= np.median(ggo) <= -300
    assert np.percentile(ggo, 10) >= -800
    dense = painted[labels == CONSOLIDATION]
    assert -100 <= np.median(dense) <= 100
    assert np.percentile(dense, 5) >= -200
    paving = painted[labels == CRAZY_PAVING]
    assert np.median(paving) > np.median(ggo) - 100
    assert np.percentile(paving, 95) > np.percentile(ggo, 95)


def test_same_seed_same_case(phantom: PhantomLungs) -> None:
    v = phantom.volume
    spec = random_case_spec(np.random.default_rng(5), covid=True)
    a = synthesize_volume(v.array, phantom.mask, v.spacing, spec, np.random.default_rng(9))
    b = synthesize_volume(v.array, phantom.mask, v.spacing, spec, np.random.default_rng(9))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert a[0].dtype == np.int16
    assert not np.array_equal(a[0], v.array)


def test_random_specs_cover_the_ranges() -> None:
    rng = np.random.default_rng(0)
    positives = [random_case_spec(rng, covid=True) for _ in range(400)]
    fractions = np.array([s.fraction for s in positives])
    assert fractions.min() >= 0.01 and fractions.max() <= 0.5
    assert (fractions < 0.03).any() and (fractions > 0.3).any()
    negatives = [random_case_spec(rng, covid=False) for _ in range(400)]
    assert all(s.fraction == 0 for s in negatives)
    kinds = {c.kind for s in negatives for c in s.confounders}
    assert kinds == {"emphysema", "nodule", "dependent_density", "basal_atelectasis"}
    assert any(not s.confounders for s in negatives)


def test_negative_case_leaves_no_lesion_labels(phantom: PhantomLungs) -> None:
    v = phantom.volume
    spec = CaseSpec(False, confounders=(Confounder("nodule", 8.0),))
    hu, labels = synthesize_volume(v.array, phantom.mask, v.spacing, spec, np.random.default_rng(1))
    assert not labels.any()
    assert (hu[phantom.mask] > -100).sum() > (v.array[phantom.mask] > -100).sum()


def test_emphysema_lowers_upper_lung(phantom: PhantomLungs, geometry) -> None:  # type: ignore[no-untyped-def]
    hu = phantom.volume.array.astype(np.float32)
    out = add_emphysema(hu, geometry, 0.1, np.random.default_rng(1))
    changed = geometry.mask & (out < hu - 50)
    assert changed.sum() / geometry.lung_voxels == pytest.approx(0.1, abs=0.03)
    assert geometry.height[changed].mean() > geometry.height[geometry.mask].mean()
    assert np.median(out[changed]) < -940


def test_nodule_volume_matches_radius(phantom: PhantomLungs, geometry) -> None:  # type: ignore[no-untyped-def]
    hu = phantom.volume.array.astype(np.float32)
    out = add_nodule(hu, geometry, 10.0, np.random.default_rng(4))
    solid = geometry.mask & (out > -150) & (hu < -500)
    voxel_mm3 = float(np.prod(geometry.spacing))
    sphere_mm3 = 4 / 3 * np.pi * 10.0**3
    assert solid.sum() * voxel_mm3 == pytest.approx(sphere_mm3, rel=0.35)


def test_dependent_density_is_posterior(phantom: PhantomLungs, geometry) -> None:  # type: ignore[no-untyped-def]
    hu = phantom.volume.array.astype(np.float32)
    out = add_dependent_density(hu, geometry, 200.0, np.random.default_rng(1))
    delta = out - hu
    back = geometry.mask & (geometry.posteriority > 0.9)
    front = geometry.mask & (geometry.posteriority < 0.3)
    assert delta[back].mean() > 100
    assert np.abs(delta[front]).max() == 0


def test_basal_atelectasis_is_thin_basal_posterior(phantom: PhantomLungs, geometry) -> None:  # type: ignore[no-untyped-def]
    hu = phantom.volume.array.astype(np.float32)
    out = add_basal_atelectasis(hu, geometry, 8.0, np.random.default_rng(1))
    dense = geometry.mask & (out > -150) & (hu < -500)
    assert dense.any()
    assert geometry.height[dense].max() <= 0.3
    assert geometry.posteriority[dense].min() >= 0.55
    assert dense.sum() / geometry.lung_voxels < 0.05


def test_unknown_confounder_is_rejected(phantom: PhantomLungs) -> None:
    v = phantom.volume
    spec = CaseSpec(False, confounders=(Confounder("pneumothorax", 1.0),))
    with pytest.raises(ValueError, match="unknown confounder"):
        synthesize_volume(v.array, phantom.mask, v.spacing, spec, np.random.default_rng(1))


def test_smooth_noise_and_top_fraction() -> None:
    rng = np.random.default_rng(0)
    field = smooth_noise((20, 30, 40), (1.0, 1.0, 2.0), 8.0, rng)
    assert field.shape == (20, 30, 40)
    assert abs(field.mean()) < 1e-4 and field.std() == pytest.approx(1.0, rel=1e-3)
    # neighbours are correlated, unlike white noise
    assert np.corrcoef(field[:, :, 1:].ravel(), field[:, :, :-1].ravel())[0, 1] > 0.8
    region = np.zeros((20, 30, 40), dtype=bool)
    region[5:15] = True
    top = top_fraction(field, region, 0.25)
    assert top.sum() == round(0.25 * region.sum())
    assert not top[~region].any()
    assert field[top].min() >= field[region & ~top].max()
