"""One standard zlib stream (RFC 1950) for mostly-zero voxel data, made fast.

A lung mask is 99 % zeros, and zlib spends most of its time on them (about 0.8 GB/s even
for zeros at level 1). Here the bytes are cut into fixed chunks: every all-zero chunk is
written as one deflate block compressed once, the runs of other chunks are compressed on
threads (zlib releases the GIL), and the pieces are joined with sync flushes, as pigz does.
The Adler-32 of the whole is combined from the pieces'. The result inflates with any zlib
(``zlib.decompress``, ITK's MetaImage reader) to exactly the input bytes.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
import numpy.typing as npt

ZLIB_HEADER = b"\x78\x01"  # deflate, 32 KiB window, no preset dictionary (check bits valid)
ADLER_BASE = 65521
DEFAULT_CHUNK = 4096


def adler32_combine(first: int, second: int, second_length: int) -> int:
    """Adler-32 of A + B from adler32(A), adler32(B) and len(B) (zlib's adler32_combine)."""
    remainder = second_length % ADLER_BASE
    low = first & 0xFFFF
    high = (remainder * low) % ADLER_BASE
    low += (second & 0xFFFF) + ADLER_BASE - 1
    high += (first >> 16) + (second >> 16) + ADLER_BASE - remainder
    low %= ADLER_BASE
    high %= ADLER_BASE
    return low | (high << 16)


def zeros_adler32(length: int) -> int:
    """Adler-32 of ``length`` zero bytes."""
    return ((length % ADLER_BASE) << 16) | 1


def _raw_deflate(data: memoryview | bytes, level: int) -> bytes:
    """Raw deflate blocks for ``data``, ending on a byte boundary with a sync flush (not final)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


@lru_cache(maxsize=8)
def _zero_block(chunk: int, level: int) -> bytes:
    return _raw_deflate(bytes(chunk), level)


def _final_block(level: int) -> bytes:
    return zlib.compressobj(level, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)


def _runs(nonzero: npt.NDArray[np.bool_]) -> Iterator[tuple[bool, int, int]]:
    """(nonzero, first chunk, end chunk) for each run of equal flags."""
    edges = np.flatnonzero(nonzero[1:] != nonzero[:-1]) + 1
    starts = [0, *edges.tolist()]
    ends = [*edges.tolist(), int(nonzero.size)]
    for start, end in zip(starts, ends, strict=True):
        yield bool(nonzero[start]), start, end


def compress_sparse(
    data: npt.NDArray[np.generic], level: int = 1, threads: int = 2, chunk: int = DEFAULT_CHUNK
) -> bytes:
    """``data``'s bytes (C order) as one zlib stream, equal on inflation to
    ``zlib.compress(data.tobytes(), level)``'s."""
    flat = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    size = int(flat.size)
    if size == 0:
        return zlib.compress(b"", level)
    count = -(-size // chunk)
    whole = size // chunk
    nonzero = np.ones(count, dtype=bool)  # a short last chunk is always compressed
    if whole:
        nonzero[:whole] = flat[: whole * chunk].reshape(whole, chunk).any(axis=1)
    view = memoryview(flat)  # type: ignore[arg-type]
    runs = list(_runs(nonzero))
    spans = [(start * chunk, min(end * chunk, size)) for hit, start, end in runs if hit]

    def pack(span: tuple[int, int]) -> tuple[bytes, int]:
        piece = view[span[0] : span[1]]
        return _raw_deflate(piece, level), zlib.adler32(piece)

    if threads > 1 and len(spans) > 1:
        with ThreadPoolExecutor(min(threads, len(spans)), "sparse-zlib") as pool:
            packed = iter(list(pool.map(pack, spans)))
    else:
        packed = iter([pack(span) for span in spans])
    zero_block = _zero_block(chunk, level)
    parts = [ZLIB_HEADER]
    adler = 1
    for hit, start, end in runs:
        if hit:
            blocks, piece_adler = next(packed)
            parts.append(blocks)
            length = min(end * chunk, size) - start * chunk
            adler = adler32_combine(adler, piece_adler, length)
        else:
            parts.append(zero_block * (end - start))
            length = (end - start) * chunk
            adler = adler32_combine(adler, zeros_adler32(length), length)
    parts.append(_final_block(level))
    parts.append(adler.to_bytes(4, "big"))
    return b"".join(parts)
