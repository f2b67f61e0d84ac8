"""The synthetic chest phantom: determinism, anatomy, geometry, composability."""

from __future__ import annotations

import numpy as np

from covidct_core.phantom import (
    LEFT_LUNG,
    RIGHT_LUNG,
    PhantomCanvas,
    PhantomOptions,
    make_chest_phantom,
    random_phantom_options,
)
from tests.segment.conftest import Phantom

SMALL = PhantomOptions(spacing=(2.5, 2.5, 5.0), noise_hu=10.0)


def test_same_seed_same_voxels_other_seed_differs() -> None:
    a = make_chest_phantom(5, SMALL)
    b = make_chest_phantom(5, SMALL)
    c = make_chest_phantom(6, SMALL)
    assert np.array_equal(a.volume.array, b.volume.array)
    assert np.array_equal(a.lung_labels, b.lung_labels)
    assert not np.array_equal(a.volume.array, c.volume.array)


def test_grid_follows_options(phantom: Phantom) -> None:
    volume = phantom.volume
    assert volume.array.dtype == np.int16
    assert volume.spacing == (1.5, 1.5, 3.0)
    nz, ny, nx = volume.array.shape
    assert (nx, ny) == (round(400 / 1.5), round(400 / 1.5))
    assert nz == round(320 / 3.0)
    assert phantom.lung.shape == volume.array.shape
    assert phantom.lung.dtype == np.uint8


def test_anatomy_is_chest_like(phantom: Phantom) -> None:
    hu = phantom.volume.array
    voxel_ml = float(np.prod(phantom.volume.spacing)) / 1000
    lung_ml = phantom.lung.sum() * voxel_ml
    assert 3000 < lung_ml < 7000
    assert -930 < np.median(hu[phantom.lung > 0]) < -740
    # both lungs present; the right one (patient right = low x here) is larger
    right = phantom.labels == RIGHT_LUNG
    left = phantom.labels == LEFT_LUNG
    assert right.sum() > left.sum() > 0.5 * right.sum()
    assert np.nonzero(right)[2].mean() < np.nonzero(left)[2].mean()
    assert (hu > 300).sum() * voxel_ml > 150  # ribs, spine, sternum
    assert hu[0, 0, 0] < -900  # outside air


def test_trachea_is_air_but_not_lung(phantom: Phantom) -> None:
    hu = phantom.volume.array
    top = hu.shape[0] - 3  # above the lung apices: only the trachea holds air inside the body
    air_in_body = (hu[top] < -900) & (np.abs(np.arange(hu.shape[2]) - hu.shape[2] / 2) < 20)
    assert air_in_body.sum() > 10
    assert phantom.lung[top].sum() == 0


def test_flips_keep_patient_geometry() -> None:
    plain = make_chest_phantom(9, SMALL)
    flipped = make_chest_phantom(
        9, PhantomOptions(**{**SMALL.__dict__, "flip_axes": (True, True, True)})
    )
    assert flipped.volume.direction == (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, -1.0)
    assert np.array_equal(flipped.volume.array, plain.volume.array[::-1, ::-1, ::-1])
    corner = np.array(plain.volume.shape_xyz) - 1
    assert np.allclose(
        flipped.volume.index_to_physical([0, 0, 0]), plain.volume.index_to_physical(corner)
    )


def test_fov_padding_and_variants() -> None:
    padded = make_chest_phantom(2, PhantomOptions(spacing=(2.5, 2.5, 5.0), fov_pad_value=-2048))
    assert padded.volume.array[:, 0, 0].max() == -2048
    options = random_phantom_options(np.random.default_rng(4))
    assert options != random_phantom_options(np.random.default_rng(5))


def test_painters_change_the_lungs_before_noise() -> None:
    seen: list[PhantomCanvas] = []

    def consolidate_right_lung(canvas: PhantomCanvas) -> None:
        seen.append(canvas)
        canvas.hu[canvas.lung_labels == RIGHT_LUNG] = 30.0

    painted = make_chest_phantom(5, SMALL, painters=[consolidate_right_lung])
    plain = make_chest_phantom(5, SMALL)
    right = plain.lung_labels == RIGHT_LUNG
    assert len(seen) == 1
    assert np.array_equal(painted.lung_labels, plain.lung_labels)
    assert np.median(painted.volume.array[right]) > -100 > np.median(plain.volume.array[right])
