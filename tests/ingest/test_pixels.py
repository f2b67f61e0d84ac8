"""Stored values -> int16 HU: rescale, bit masks, overflow, padding, clipping."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from covidct_ingest.config import ConversionRules
from covidct_ingest.pixels import write_hu
from tests.ingest.fakes import header

DEFAULT = ConversionRules()
RAW = ConversionRules(map_padding_to_air=False, clip_below_air=False)


def hu(raw: np.ndarray, rules: ConversionRules = DEFAULT, **changes: object) -> np.ndarray:
    head = replace(header(), **changes)  # type: ignore[arg-type]
    out = np.empty(raw.shape, np.int16)
    write_hu(raw, out, head, head.rescale_slope, head.rescale_intercept, rules)
    return out


def test_unsigned_12_bit_with_overlay_bits_is_masked() -> None:
    raw = np.array([[0, 1024, 4095, 0x1000 | 1024]], np.uint16)
    assert hu(raw, RAW).tolist() == [[-1024, 0, 3071, 0]]


def test_signed_16_bit_never_wraps_around() -> None:
    raw = np.array([[-32768, -2000, 0, 32767]], np.int16)
    out = hu(raw, RAW, pixel_representation=1, bits_stored=16, rescale_intercept=-1024.0)
    assert out.tolist() == [[-32768, -3024, -1024, 31743]]
    up = hu(raw, RAW, pixel_representation=1, bits_stored=16, rescale_intercept=1000.0)
    assert up.tolist() == [[-31768, -1000, 1000, 32767]]


def test_signed_12_bit_is_sign_extended() -> None:
    raw = np.array([[0x0FFF, 0x0800, 0x07FF]], np.int16)  # -1, -2048, 2047 in 12 bits
    out = hu(raw, RAW, pixel_representation=1, bits_stored=12, rescale_intercept=0.0)
    assert out.tolist() == [[-1, -2048, 2047]]


def test_fractional_slope_rounds() -> None:
    raw = np.array([[0, 1, 3, 2000]], np.uint16)
    out = hu(raw, RAW, rescale_slope=0.5, rescale_intercept=-1000.0)
    assert out.tolist() == [[-1000, -1000, -998, 0]]


def test_padding_and_values_below_air_become_air() -> None:
    raw = np.array([[0, 50, 1024, 2000]], np.int16)
    out = hu(
        raw,
        pixel_representation=1,
        bits_stored=16,
        rescale_intercept=-1024.0,
        pixel_padding_value=50,
    )
    assert out.tolist() == [[-1024, -1024, 0, 976]]
    clipped = hu(np.array([[-2000, 0, 24]], np.int16), pixel_representation=1, bits_stored=16)
    assert clipped.tolist() == [[-1024, -1024, -1000]]
    kept = hu(
        np.array([[-2000, 1034]], np.int16),
        RAW,
        pixel_representation=1,
        bits_stored=16,
        pixel_padding_value=-2000,
    )
    assert kept.tolist() == [[-3024, 10]]


def test_padding_range_above_air_is_mapped() -> None:
    raw = np.array([[1000, 1100, 1200, 1300]], np.uint16)
    out = hu(raw, pixel_padding_value=1100, pixel_padding_range_limit=1200)
    assert out.tolist() == [[-24, -1024, -1024, 276]]


def test_in_place_decode() -> None:
    out = np.array([[1024, 0x1000 | 5]], np.int16)
    view = out.view(np.uint16)
    head = header()
    write_hu(view, out, head, 1.0, -1024.0, DEFAULT, view)
    assert out.tolist() == [[0, -1019]]
