"""``covidct phantom``: a synthetic chest CT written as a DICOM series (no real patient)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from covidct.dicom_export import SeriesInfo, write_ct_series
from covidct_core.phantom import make_chest_phantom

DEMO_LESION_FRACTION = 0.2


def write_phantom_series(
    out: Path, seed: int = 0, lesions: bool = False, fraction: float = DEMO_LESION_FRACTION
) -> Path:
    """Write one synthetic chest CT series into ``out``; with ``lesions``, COVID-like
    ground-glass opacities, crazy paving and consolidation cover ``fraction`` of the lungs."""
    phantom = make_chest_phantom(seed)
    volume = phantom.volume
    description = "covidct phantom"
    if lesions:
        from covidct_classify.synthetic import CaseSpec, synthesize_volume

        spec = CaseSpec(True, fraction, consolidation_share=0.2, crazy_paving_share=0.2)
        hu, _labels = synthesize_volume(
            volume.array,
            phantom.lung_mask,
            volume.spacing,
            spec,
            np.random.default_rng(seed),
            volume.direction,
        )
        volume = dataclasses.replace(volume, array=hu)
        description = f"covidct phantom with synthetic findings ({fraction:.0%} of lung)"
    info = SeriesInfo(series_description=description, uid_seed=f"covidct-phantom-{seed}-{lesions}")
    write_ct_series(volume, out, info)
    return out
