"""The chunked zlib stream inflates to exactly the input, whatever its zero pattern."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from covidct_core.sparse_zlib import adler32_combine, compress_sparse, zeros_adler32


def sparse_volume(rng: np.random.Generator, shape: tuple[int, ...], fill: float) -> np.ndarray:
    volume = np.zeros(shape, np.uint8)
    if fill > 0:
        z0, y0 = rng.integers(0, shape[0] // 2), rng.integers(0, shape[1] // 2)
        block = volume[z0 : z0 + shape[0] // 3, y0 : y0 + shape[1] // 2]
        block[...] = rng.random(block.shape) < fill
    return volume


@pytest.mark.parametrize("chunk", [16, 100, 4096])
@pytest.mark.parametrize("threads", [1, 2])
def test_stream_inflates_to_the_input(chunk: int, threads: int) -> None:
    rng = np.random.default_rng(chunk + threads)
    cases = [
        sparse_volume(rng, (20, 33, 47), 0.3),  # size not a multiple of the chunk
        sparse_volume(rng, (12, 64, 64), 1.0),
        np.zeros((7, 13, 11), np.uint8),  # all zero
        np.ones((5, 9, 40), np.uint8),  # no zero chunk at all
        rng.integers(0, 255, (3, 5, 7), dtype=np.uint8),  # smaller than one chunk
        np.zeros(0, np.uint8),
    ]
    for array in cases:
        stream = compress_sparse(array, 1, threads=threads, chunk=chunk)
        assert zlib.decompress(stream) == array.tobytes()


def test_other_dtypes_and_layouts_are_taken_as_c_order_bytes() -> None:
    values = np.arange(24 * 30, dtype=np.int16).reshape(24, 30)
    values[5:20] = 0
    for array in (values, values.T, values[::-1]):
        assert zlib.decompress(compress_sparse(array, 6, chunk=64)) == array.tobytes()


def test_zero_chunks_cost_little() -> None:
    mask = np.zeros((64, 256, 256), np.uint8)
    mask[30:34, 100:140, 60:200] = 1
    stream = compress_sparse(mask)
    assert len(stream) < 0.01 * mask.nbytes
    assert zlib.decompress(stream) == mask.tobytes()


def test_a_corrupted_stream_fails_its_checksum() -> None:
    mask = np.zeros((8, 64, 64), np.uint8)
    mask[2:4, 10:20, 10:50] = 1
    stream = bytearray(compress_sparse(mask, chunk=512))
    stream[-2] ^= 0xFF  # the Adler-32 trailer
    with pytest.raises(zlib.error):
        zlib.decompress(bytes(stream))


def test_adler32_combine_matches_zlib() -> None:
    rng = np.random.default_rng(1)
    for first_size, second_size in [(0, 5), (5, 0), (1, 1), (70000, 123456), (3, 65521 * 3)]:
        first = rng.integers(0, 256, first_size, dtype=np.uint8).tobytes()
        second = rng.integers(0, 256, second_size, dtype=np.uint8).tobytes()
        combined = adler32_combine(zlib.adler32(first), zlib.adler32(second), len(second))
        assert combined == zlib.adler32(first + second)
    for length in (0, 1, 65521, 200000):
        assert zeros_adler32(length) == zlib.adler32(bytes(length))
