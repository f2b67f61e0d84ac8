"""Acceptance on real public chest CTs (read from the samples folder, never copied).

Model vs classical silver mask on the 4 Lung-PET-CT-Dx series and LIDC-IDRI-0001 (held out
from training), and the CIP ct-64 low-resolution CT against its wholeLung-64 mask.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from covidct_core.volume_io import read_reference_image, read_reference_series
from covidct_segment.classical import dice, segment_lungs_classical
from covidct_segment.segmenters import ModelSegmenter
from tests.segment.conftest import chest_series

pytestmark = pytest.mark.slow

SERIES_IDS = ["A0001-2", "A0001-3", "A0002-2", "A0002-3", "LIDC-0001"]


@pytest.mark.parametrize("index", range(5), ids=SERIES_IDS)
def test_model_matches_classical_on_real_series(
    index: int, samples_dir: Path, model_segmenter: ModelSegmenter
) -> None:
    volume = read_reference_series(chest_series(samples_dir)[index])
    result = model_segmenter.segment(volume)
    assert result.mask.shape == volume.array.shape and result.mask.dtype == np.uint8
    silver = segment_lungs_classical(volume).mask
    score = dice(result.mask, silver)
    assert score >= 0.95, f"Dice {score:.4f}"
    litres = float(result.mask.sum()) * float(np.prod(volume.spacing)) / 1e6
    assert 2.5 <= litres <= 8.0
    assert result.classical_dice is not None and result.classical_dice >= 0.9


def test_cip_low_resolution_ct(samples_dir: Path, model_segmenter: ModelSegmenter) -> None:
    cip = samples_dir / "cip-copdgene-testdata"
    volume = read_reference_image(cip / "ct-64.nrrd")
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(cip / "wholeLung-64.nrrd")))
    model = model_segmenter.segment(volume)
    assert dice(model.mask, reference) >= 0.90
    assert dice(segment_lungs_classical(volume).mask, reference) >= 0.90
