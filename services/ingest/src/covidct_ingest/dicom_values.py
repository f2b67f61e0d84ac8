"""Tolerant readers of DICOM attribute values: malformed values become None, never raise.

Two sources give the same answers: :class:`PydicomValues` over a pydicom Dataset and
:class:`RawValues` over raw element bytes from :mod:`covidct_ingest.fastparse`. Both decode
little-endian raw bytes directly (pydicom's generic value conversion costs ~20 us per element,
which dominated header parsing) and fall back to pydicom's conversion for anything unusual.
"""

from __future__ import annotations

from typing import Any, Protocol

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue


def get_value(ds: Dataset | None, keyword: str) -> Any:
    if ds is None:
        return None
    try:
        return ds.get(keyword)
    except Exception:  # pydicom raises many types on malformed values
        return None


def text_value(ds: Dataset, keyword: str) -> str:
    value = get_value(ds, keyword)
    if value is None:
        return ""
    if isinstance(value, list | tuple | MultiValue):
        return "\\".join(str(v).strip() for v in value)
    return str(value).strip()


def to_float(value: Any) -> float | None:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if result == result else None  # reject NaN


def to_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def to_floats(value: Any, count: int) -> tuple[float, ...] | None:
    if value is None or isinstance(value, str | bytes):
        return None
    try:
        items = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    if len(items) != count or any(v != v for v in items):
        return None
    return tuple(items)


def first_item(ds: Dataset | None, keyword: str) -> Dataset | None:
    """The first item of a sequence attribute, or None."""
    seq = get_value(ds, keyword)
    try:
        return seq[0] if seq else None
    except (TypeError, IndexError):
        return None


# --------------------------------------------------------------------------- raw decoding


def decode_text(raw: bytes) -> str:
    """ASCII text value; multiple values stay joined by backslashes, each one stripped."""
    text = raw.decode("ascii")
    if "\\" in text:
        return "\\".join(part.strip(" \x00") for part in text.split("\\"))
    return text.strip(" \x00")


def decode_numbers(raw: bytes) -> tuple[float, ...] | None:
    """DS/IS values; None when empty or malformed."""
    try:
        result = tuple(float(part.strip(" \x00")) for part in raw.decode("ascii").split("\\"))
    except (ValueError, UnicodeDecodeError):
        return None
    return None if any(v != v for v in result) else result


def decode_ushort(raw: bytes, vr: str | None, signed: bool) -> int | None:
    """A US/SS value; implicit VR (``vr`` None) is read signed when ``signed``."""
    if len(raw) < 2:
        return None
    is_signed = signed if vr in (None, "OW", "US or SS") else vr == "SS"
    value = int.from_bytes(raw[:2], "little", signed=is_signed)
    if signed and value > 32767:  # US-encoded value of signed pixels
        value -= 65536
    return value


class ValueSource(Protocol):
    def text(self, tag: int, keyword: str) -> str: ...

    def numbers(self, tag: int, keyword: str) -> tuple[float, ...] | None: ...

    def ushort(self, tag: int, keyword: str, *, signed: bool = False) -> int | None: ...


def number(source: ValueSource, tag: int, keyword: str) -> float | None:
    values = source.numbers(tag, keyword)
    return values[0] if values else None


def integer(source: ValueSource, tag: int, keyword: str) -> int | None:
    value = number(source, tag, keyword)
    return None if value is None or not value.is_integer() else int(value)


class RawValues:
    """Values from raw little-endian element bytes (tag -> (explicit VR or None, bytes))."""

    def __init__(self, elements: dict[int, tuple[bytes | None, bytes]]) -> None:
        self._elements = elements

    def text(self, tag: int, keyword: str) -> str:
        item = self._elements.get(tag)
        return decode_text(item[1]) if item else ""

    def numbers(self, tag: int, keyword: str) -> tuple[float, ...] | None:
        item = self._elements.get(tag)
        return decode_numbers(item[1]) if item else None

    def ushort(self, tag: int, keyword: str, *, signed: bool = False) -> int | None:
        item = self._elements.get(tag)
        if not item:
            return None
        vr = item[0].decode("ascii") if item[0] else None
        return decode_ushort(item[1], vr, signed)


_CONVERT = object()  # marker: the element needs pydicom's own value conversion


class PydicomValues:
    """Values from a pydicom Dataset: raw bytes decoded directly when plain, else pydicom."""

    def __init__(self, ds: Dataset) -> None:
        self._ds = ds

    def _raw(self, tag: int) -> tuple[str | None, bytes] | object | None:
        """(VR, value bytes) of a plain raw element, None when absent, else ``_CONVERT``."""
        try:
            elem = self._ds.get_item(tag)
        except Exception:  # a deferred or malformed element
            return _CONVERT
        if elem is None:
            return None
        if isinstance(elem, RawDataElement) and elem.is_little_endian:
            value = elem.value
            if isinstance(value, bytes):
                return elem.VR, value
        return _CONVERT

    def text(self, tag: int, keyword: str) -> str:
        raw = self._raw(tag)
        if raw is None:
            return ""
        if isinstance(raw, tuple) and raw[1].isascii():
            return decode_text(raw[1])
        return text_value(self._ds, keyword)

    def numbers(self, tag: int, keyword: str) -> tuple[float, ...] | None:
        raw = self._raw(tag)
        if raw is None:
            return None
        if isinstance(raw, tuple) and raw[1].isascii():
            return decode_numbers(raw[1])
        value = get_value(self._ds, keyword)
        if value is None:
            return None
        items = value if isinstance(value, list | tuple | MultiValue) else [value]
        numbers = [to_float(v) for v in items]
        if any(n is None for n in numbers):
            return None
        return tuple(n for n in numbers if n is not None)

    def ushort(self, tag: int, keyword: str, *, signed: bool = False) -> int | None:
        raw = self._raw(tag)
        if raw is None:
            return None
        if isinstance(raw, tuple) and raw[0] in (None, "US", "SS", "OW", "US or SS"):
            return decode_ushort(raw[1], raw[0], signed)
        value = to_int(get_value(self._ds, keyword))
        if value is not None and signed and value > 32767:
            return value - 65536
        return value
