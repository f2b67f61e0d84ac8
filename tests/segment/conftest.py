"""Fixtures for the segment tests: real public CT series, phantoms and the lung_seg bundle."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from covidct_core.phantom import PhantomOptions, make_chest_phantom
from covidct_core.volume_io import Volume
from covidct_segment.bundle import LoadedBundle, load_bundle
from covidct_segment.segmenters import ModelSegmenter
from tests.conftest import REPO_ROOT
from tests.samples import series_dirs

BUNDLE_DIR = REPO_ROOT / "models" / "lung_seg"


@dataclass(frozen=True)
class Phantom:
    volume: Volume
    lung: np.ndarray
    labels: np.ndarray


def chest_series(samples: Path) -> list[Path]:
    """The 4 Lung-PET-CT-Dx series and LIDC-IDRI-0001."""
    found = series_dirs(samples, "tcia-lung-pet-ct-dx") + series_dirs(samples, "lidc-idri-0001")
    if len(found) != 5:
        pytest.fail(f"expected 5 real chest series under {samples}, found {len(found)}")
    return found


@pytest.fixture(scope="session", autouse=True)
def _two_threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def phantom() -> Phantom:
    """A standard phantom (1.5 x 1.5 x 3 mm)."""
    result = make_chest_phantom(3, PhantomOptions())
    return Phantom(result.volume, result.lung_mask, result.lung_labels)


@pytest.fixture(scope="session")
def thick_flipped_phantom() -> Phantom:
    """Thick slices, stored with flipped x and z axes (geometry preserved), padded FOV."""
    options = PhantomOptions(
        spacing=(1.8, 1.8, 6.0),
        flip_axes=(True, False, True),
        fov_pad_value=-2048,
        fov_mm=380.0,
        noise_hu=35.0,
        arms=True,
    )
    result = make_chest_phantom(7, options)
    return Phantom(result.volume, result.lung_mask, result.lung_labels)


@pytest.fixture(scope="session")
def bundle() -> LoadedBundle:
    return load_bundle(str(BUNDLE_DIR))


@pytest.fixture(scope="session")
def model_segmenter(bundle: LoadedBundle) -> ModelSegmenter:
    return ModelSegmenter(bundle, torch.device("cpu"))
