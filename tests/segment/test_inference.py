"""Model inference: geometry, determinism, size limits, settings from metadata."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from covidct_core.errors import PermanentError
from covidct_core.volume_io import Volume
from covidct_segment.bundle import LoadedBundle
from covidct_segment.classical import dice
from covidct_segment.inference import (
    InferenceSettings,
    WindowPredictor,
    coarse_view,
    lung_voxels,
    segment_volume,
)
from covidct_segment.preprocess import model_grid, resample_hu, resample_mask_to_grid
from covidct_segment.segmenters import ModelSegmenter
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


def test_inside_body_keeps_lungs_and_drops_outside_air(phantom: Phantom) -> None:
    prep = InferenceSettings().preprocessing
    grid = model_grid(phantom.volume, prep)
    view = coarse_view(resample_hu(phantom.volume, grid)[0, 0], grid.spacing_zyx, -500.0)
    assert view.factors == (2, 2, 2) and view.spacing_zyx == pytest.approx(
        tuple(2 * s for s in grid.spacing_zyx)
    )
    body = view.body_on(grid.shape)
    lung = resample_mask_to_grid(phantom.lung, grid)
    assert body.shape == grid.shape
    assert body[:, :3, :3].sum() == 0  # the corner columns are outside air
    assert (body[lung > 0] > 0).mean() > 0.999
    assert body.mean() < 0.7


def test_lung_voxels_matches_argmax() -> None:
    """Two channels reach lung_voxels as one lung-minus-background channel (the predictor's
    reduction); the result is the argmax over the model's channels either way."""
    torch.manual_seed(0)
    for channels in (2, 3):
        logits = torch.randn(1, channels, 6, 7, 8)
        expected = (logits[0].argmax(dim=0) == 1).to(torch.uint8)
        predictor = WindowPredictor(lambda batch, out=logits: out)  # type: ignore[arg-type,misc]
        blended = predictor(torch.zeros(1, 1, 6, 7, 8))[0]
        assert blended.shape[0] == (1 if channels == 2 else channels)
        assert torch.equal(lung_voxels(blended), expected)
        assert predictor.windows == 1


def test_cross_check_gives_the_same_answer_beside_or_after_the_network(
    bundle: LoadedBundle, phantom: Phantom
) -> None:
    """The classical check runs beside the windows on accelerators and after them on the CPU;
    either order gives the same mask and Dice, and the plain inference the same mask."""
    after = ModelSegmenter(bundle, torch.device("cpu"))
    beside = ModelSegmenter(bundle, torch.device("cpu"), check_during_inference=True)
    assert not after.check_during_inference and beside.check_during_inference
    first, second = after.segment(phantom.volume), beside.segment(phantom.volume)
    assert np.array_equal(first.mask, second.mask)
    assert first.classical_dice is not None and first.classical_dice >= 0.95
    assert first.classical_dice == second.classical_dice and first.qa_flags == []
    plain = segment_volume(bundle.model, phantom.volume, after.settings, torch.device("cpu"))
    assert np.array_equal(plain.mask, first.mask)
    assert set(first.timings) == {"preprocess_s", "infer_s", "postprocess_s", "qa_s"}


def test_a_failed_post_processing_waits_for_the_cross_check(bundle: LoadedBundle) -> None:
    """NO_LUNG_FOUND from the post-processing propagates only once the helper's work (the
    cross-check and the caller's side task after it) has finished: nothing keeps running
    behind a failed message."""
    finished: list[bool] = []

    def slow_side_task() -> None:
        time.sleep(2.0)
        finished.append(True)

    block = Volume(np.full((40, 60, 60), 40, np.int16), (3.0, 3.0, 3.0), (0.0, 0.0, 0.0))
    segmenter = ModelSegmenter(bundle, torch.device("cpu"), check_during_inference=True)
    with pytest.raises(PermanentError) as info:
        segmenter.segment(block, slow_side_task)
    assert info.value.code == "NO_LUNG_FOUND"
    assert finished == [True]


def test_the_side_task_runs_once_also_without_the_helper(
    bundle: LoadedBundle, phantom: Phantom
) -> None:
    """A volume rejected before the helper starts (too small) still runs the side task."""
    calls: list[int] = []
    tiny = Volume(np.full((4, 60, 60), 40, np.int16), (3.0, 3.0, 3.0), (0.0, 0.0, 0.0))
    segmenter = ModelSegmenter(bundle, torch.device("cpu"))
    with pytest.raises(PermanentError) as info:
        segmenter.segment(tiny, lambda: calls.append(1))
    assert info.value.code == "VOLUME_TOO_SMALL" and calls == [1]
    result = segmenter.segment(phantom.volume, lambda: calls.append(2))
    assert result.mask.any() and calls == [1, 2]
