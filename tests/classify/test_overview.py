from __future__ import annotations

import io

import numpy as np
from PIL import Image

from covidct_classify.overview import (
    NOTICE_RGB,
    OUTLINE_RGB,
    pick_slices,
    render_overview,
    result_lines,
)
from covidct_classify.results import SeriesResult
from tests.classify.conftest import PhantomLungs


def _result() -> SeriesResult:
    return SeriesResult(
        "1.2.3.4",
        "1.2.3",
        0.75,
        0.25,
        4000.0,
        12.5,
        2.5,
        ("SLICE_GAP",),
        "lung_seg@1.0.0",
        "covid_cls@1.0.0",
        "0.1.0",
        "2026-01-02T03:04:05.000Z",
    )


def test_overview_png_has_views_outline_and_notice(phantom: PhantomLungs) -> None:
    v = phantom.volume
    png = render_overview(
        v.array, phantom.mask, v.spacing, v.direction, result_lines(_result(), -800)
    )
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.mode == "RGB"
    pixels = np.asarray(image)
    assert (pixels == OUTLINE_RGB).all(axis=2).sum() > 500
    assert (pixels == NOTICE_RGB).all(axis=2).sum() > 50
    # two views side by side, each with square physical pixels: the coronal view of a
    # 400 mm wide, 428 mm tall phantom is roughly as wide as it is tall
    assert image.width > image.height


def test_result_lines_carry_probability_metrics_and_flags() -> None:
    lines = "\n".join(result_lines(_result(), -812.4))
    assert "P(COVID-19) = 0.750" in lines
    assert "covid_cls@1.0.0" in lines and "lung_seg@1.0.0" in lines
    assert "12.5 %" in lines and "2.5 %" in lines and "-812" in lines
    assert "SLICE_GAP" in lines


def test_flipped_volume_gives_the_same_picture(phantom: PhantomLungs) -> None:
    v = phantom.volume
    flipped_direction = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, -1.0)
    a = render_overview(v.array, phantom.mask, v.spacing, v.direction, ["x"])
    b = render_overview(
        v.array[::-1, ::-1, ::-1],
        phantom.mask[::-1, ::-1, ::-1],
        v.spacing,
        flipped_direction,
        ["x"],
    )
    assert np.array_equal(
        np.asarray(Image.open(io.BytesIO(a))), np.asarray(Image.open(io.BytesIO(b)))
    )


def test_pick_slices_prefers_opacity() -> None:
    hu = np.full((10, 20, 20), -850.0)
    lung = np.zeros(hu.shape, dtype=bool)
    lung[1:9, 4:16, 4:16] = True
    hu[6, 5:15, 5:15] = -400
    axial, coronal = pick_slices(hu, lung)
    assert axial == 6
    assert coronal == 10
