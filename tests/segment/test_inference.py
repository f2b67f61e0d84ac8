"""Model inference: geometry, determinism, size limits, settings from metadata."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from covidct_core.errors import PermanentError
from covidct_core.volume_io import Volume
from covidct_segment.bundle import LoadedBundle
from covidct_segment.classical import dice
from covidct_segment.inference import InferenceSettings, segment_volume
from tests.segment.conftest import Phantom


def test_settings_from_metadata_and_overrides(bundle: LoadedBundle) -> None:
    settings = InferenceSettings.from_metadata(bundle.metadata)
    image = bundle.metadata["network_data_format"]["inputs"]["image"]
    assert settings.preprocessing.spacing == tuple(image["pixdim"])
    assert (settings.preprocessing.hu_min, settings.preprocessing.hu_max) == tuple(
        image["hu_window"]
    )
    assert list(settings.roi_size) == bundle.metadata["inference"]["roi_size"]
    custom = InferenceSettings.from_metadata(bundle.metadata, overlap=0.5, sw_batch_size=4)
    assert (custom.overlap, custom.sw_batch_size) == (0.5, 4)


def test_model_on_phantom_is_exact_grid_and_deterministic(
    bundle: LoadedBundle, phantom: Phantom
) -> None:
    settings = InferenceSettings.from_metadata(bundle.metadata)
    first = segment_volume(bundle.model, phantom.volume, settings, torch.device("cpu"))
    assert first.mask.shape == phantom.volume.array.shape and first.mask.dtype == np.uint8
    assert dice(first.mask, phantom.lung) >= 0.95
    assert first.windows >= 1
    second = segment_volume(bundle.model, phantom.volume, settings, torch.device("cpu"))
    assert np.array_equal(first.mask, second.mask)


def test_too_small_volume(bundle: LoadedBundle) -> None:
    tiny = Volume(np.full((2, 512, 512), -800, np.int16), (0.7, 0.7, 1.0), (0.0, 0.0, 0.0))
    with pytest.raises(PermanentError) as info:
        segment_volume(bundle.model, tiny, InferenceSettings(), torch.device("cpu"))
    assert info.value.code == "VOLUME_TOO_SMALL"


def test_no_lung_in_soft_tissue_block(bundle: LoadedBundle) -> None:
    block = Volume(np.full((40, 60, 60), 40, np.int16), (3.0, 3.0, 3.0), (0.0, 0.0, 0.0))
    with pytest.raises(PermanentError) as info:
        segment_volume(bundle.model, block, InferenceSettings(), torch.device("cpu"))
    assert info.value.code == "NO_LUNG_FOUND"
