"""Decode stored pixel values and write Hounsfield units into a preallocated int16 array.

Uncompressed little-endian data is read straight from the object bytes with ``np.frombuffer``
(no copy, no pydicom parse); compressed data (JPEG Lossless, JPEG-LS, JPEG 2000, RLE...) goes
through pydicom's pixel decoders (pylibjpeg / gdcm plugins). A transfer syntax no installed
decoder handles raises ``UNSUPPORTED_TRANSFER_SYNTAX``.
"""

from __future__ import annotations

import io
import re
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import UID

from covidct_core.errors import PermanentError
from covidct_ingest import codes
from covidct_ingest.config import ConversionRules
from covidct_ingest.headers import IMPLICIT_VR_LE, InstanceHeader

_UID_TEXT = re.compile(r"[0-9]+(\.[0-9]+)*")
NATIVE_LE = frozenset({IMPLICIT_VR_LE, "1.2.840.10008.1.2.1"})
Int16Array = npt.NDArray[np.int16]
INT16_MIN, INT16_MAX = -32768, 32767


def _check_supported(header: InstanceHeader) -> None:
    if header.samples_per_pixel != 1:
        raise PermanentError(
            codes.UNSUPPORTED_PIXEL_DATA, f"{header.samples_per_pixel} samples per pixel"
        )
    if header.bits_allocated not in (8, 16, 32):
        raise PermanentError(codes.UNSUPPORTED_PIXEL_DATA, f"BitsAllocated {header.bits_allocated}")
    if header.transfer_syntax_uid in NATIVE_LE:
        return
    if not _UID_TEXT.fullmatch(header.transfer_syntax_uid):
        raise PermanentError(
            codes.UNSUPPORTED_TRANSFER_SYNTAX,
            f"malformed transfer syntax UID {header.transfer_syntax_uid!r}",
        )
    ts = UID(header.transfer_syntax_uid)
    try:
        decoder = get_decoder(ts)
    except NotImplementedError as e:
        raise PermanentError(
            codes.UNSUPPORTED_TRANSFER_SYNTAX, f"no decoder for transfer syntax {ts}"
        ) from e
    if not decoder.is_available:
        raise PermanentError(
            codes.UNSUPPORTED_TRANSFER_SYNTAX, f"no installed decoder for transfer syntax {ts}"
        )


def native_dtype(header: InstanceHeader) -> np.dtype[Any]:
    """The numpy dtype of uncompressed little-endian stored values."""
    kind = "i" if header.pixel_representation == 1 else "u"
    return np.dtype(f"<{kind}{max(1, header.bits_allocated // 8)}")


def is_native(header: InstanceHeader) -> bool:
    """Uncompressed little-endian single-sample 16-bit pixels at a known offset."""
    return (
        header.transfer_syntax_uid in NATIVE_LE
        and header.pixel_data_offset is not None
        and header.samples_per_pixel == 1
        and header.bits_allocated == 16
    )


def _native_frames(data: bytes | memoryview, header: InstanceHeader) -> npt.NDArray[Any]:
    bits = header.bits_allocated
    kind = "i" if header.pixel_representation == 1 else "u"
    dtype = np.dtype(f"<{kind}{bits // 8}")
    frames = max(1, header.number_of_frames)
    count = header.rows * header.columns * frames
    offset = header.pixel_data_offset or 0
    if offset + count * dtype.itemsize > len(data):
        raise PermanentError(codes.CORRUPT_FILE, "pixel data is truncated")
    raw = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return raw.reshape(frames, header.rows, header.columns)


def _decoded_frames(data: bytes | memoryview, header: InstanceHeader) -> npt.NDArray[Any]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(bytes(data)), force=True)
            array = np.asarray(ds.pixel_array)
    except PermanentError:
        raise
    except Exception as e:  # decoders raise many types on broken streams
        raise PermanentError(
            codes.CORRUPT_FILE, f"cannot decode pixel data: {type(e).__name__}: {e}"
        ) from e
    frames = max(1, header.number_of_frames)
    expected = (frames, header.rows, header.columns)
    if array.size != frames * header.rows * header.columns:
        raise PermanentError(codes.CORRUPT_FILE, f"decoded {array.shape}, expected {expected}")
    return array.reshape(expected)


def stored_frames(data: bytes | memoryview, header: InstanceHeader) -> npt.NDArray[Any]:
    """Stored (pre-rescale) values of every frame as (frames, rows, columns)."""
    _check_supported(header)
    if header.transfer_syntax_uid in NATIVE_LE and header.pixel_data_offset is not None:
        return _native_frames(data, header)
    return _decoded_frames(data, header)


def _value_range(header: InstanceHeader, raw: npt.NDArray[Any]) -> tuple[int, int]:
    """Bounds of the stored values, from BitsStored (no data scan)."""
    bits = min(header.bits_stored or raw.dtype.itemsize * 8, raw.dtype.itemsize * 8)
    if raw.dtype.kind == "i":
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _normalise_bits(
    raw: npt.NDArray[Any], header: InstanceHeader, scratch: npt.NDArray[Any] | None
) -> npt.NDArray[Any]:
    """Sign-extend (signed) or mask (unsigned) values to BitsStored; idempotent."""
    bits = raw.dtype.itemsize * 8
    stored = header.bits_stored
    if not 0 < stored < bits or raw.dtype.kind not in "iu":
        return raw
    out = scratch if scratch is not None and scratch.dtype == raw.dtype else np.empty_like(raw)
    shift = bits - stored
    if raw.dtype.kind == "i":
        np.left_shift(raw, shift, out=out)
        np.right_shift(out, shift, out=out)
    else:  # drop bits above BitsStored (overlays in old data)
        np.bitwise_and(raw, np.asarray((1 << stored) - 1, dtype=raw.dtype), out=out)
    return out


def _fits_int16(raw: npt.NDArray[Any], low: int, high: int, intercept: int) -> bool:
    """raw and raw + intercept fit int16: from the bit range, else from the data."""
    if min(low, low + intercept) >= INT16_MIN and max(high, high + intercept) <= INT16_MAX:
        return True
    if raw.dtype.itemsize > 2 and raw.dtype.kind in "iu":
        return False
    actual_low = int(raw.min()) if low + intercept < INT16_MIN or low < INT16_MIN else low
    actual_high = int(raw.max()) if high + intercept > INT16_MAX or high > INT16_MAX else high
    return (
        actual_low >= INT16_MIN
        and actual_high <= INT16_MAX
        and actual_low + intercept >= INT16_MIN
        and actual_high + intercept <= INT16_MAX
    )


def _padding_mask(
    values: npt.NDArray[Any],
    header: InstanceHeader,
    slope: float,
    intercept: float,
    rules: ConversionRules,
    low: int,
    high: int,
) -> npt.NDArray[np.bool_] | None:
    """Where the stored values are padding that the air clip alone would not turn into air."""
    pad = header.pixel_padding_value
    if not rules.map_padding_to_air or pad is None:
        return None
    limit = header.pixel_padding_range_limit
    pad_low, pad_high = (pad, pad) if limit is None else (min(pad, limit), max(pad, limit))
    highest = max(pad_low * slope, pad_high * slope) + intercept
    if (rules.clip_below_air and highest < rules.air_hu) or pad_high < low or pad_low > high:
        return None
    if pad_low == pad_high:
        return np.asarray(values == pad_low)
    return np.asarray((values >= pad_low) & (values <= pad_high))


def write_hu(
    raw: npt.NDArray[Any],
    out: Int16Array,
    header: InstanceHeader,
    slope: float,
    intercept: float,
    rules: ConversionRules,
    scratch: npt.NDArray[Any] | None = None,
) -> None:
    """``out[...] = raw * slope + intercept`` as int16 HU, with padding mapped to air.

    ``scratch`` (same shape as ``raw``) avoids a temporary per slice; ``raw`` may be a view of
    ``out``'s own memory (decode in place), in which case pass ``scratch=raw``.
    """
    values = _normalise_bits(raw, header, scratch)
    low, high = _value_range(header, values)
    mask = _padding_mask(values, header, slope, intercept, rules, low, high)
    exact = slope == 1.0 and float(intercept).is_integer() and values.dtype.kind in "iu"
    lowest_hu: float = INT16_MIN
    if exact and _fits_int16(values, low, high, int(intercept)):
        if values.dtype == np.int16:
            values16 = values
        elif values.dtype == np.uint16:
            values16 = values.view(np.int16)  # all values < 2**15: same bits, same meaning
        else:
            values16 = values.astype(np.int16)
        np.add(values16, np.int16(intercept), out=out)
        lowest_hu = low + intercept
    elif exact:
        wide = values.astype(np.int64) + int(intercept)
        np.clip(wide, INT16_MIN, INT16_MAX, out=wide)
        out[...] = wide
    else:
        work_type = np.float64 if values.dtype.itemsize > 2 else np.float32
        hu = np.multiply(values, slope, dtype=work_type)
        np.add(hu, intercept, out=hu)
        np.rint(hu, out=hu)
        np.clip(hu, INT16_MIN, INT16_MAX, out=hu)
        out[...] = hu
    air = np.int16(rules.air_hu)
    if mask is not None:
        np.copyto(out, air, where=mask)
    if rules.clip_below_air and lowest_hu < rules.air_hu:
        np.maximum(out, air, out=out)
