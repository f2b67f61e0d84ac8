"""Shared fixtures for the classify tests: a small chest phantom and a tiny bundle."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from covidct_core.phantom import PhantomOptions, make_chest_phantom
from covidct_core.volume_io import Volume
from tests.classify.bundle_helpers import write_tiny_bundle


@dataclass(frozen=True)
class PhantomLungs:
    volume: Volume
    mask: np.ndarray


@pytest.fixture(scope="session")
def phantom() -> PhantomLungs:
    """A coarse (2 x 2 x 4 mm) phantom: fast to build and to process."""
    result = make_chest_phantom(11, PhantomOptions(spacing=(2.0, 2.0, 4.0)))
    return PhantomLungs(result.volume, result.lung_mask > 0)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly initialised 1-channel DenseNet bundle with the covid_cls contract."""
    return write_tiny_bundle(tmp_path_factory.mktemp("tiny_bundle"), in_channels=1)
