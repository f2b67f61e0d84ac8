"""A minimal top-level DICOM element walker for the common case (speed path of headers.py).

It handles Part 10 files in little-endian transfer syntaxes (implicit or explicit VR, and the
encapsulated ones, which are explicit VR LE), records the raw bytes of the wanted tags and the
offset of the pixel data element, and steps over everything else, sequences included. Any
surprise (big endian, deflate, enhanced multi-frame, odd lengths, data ending early) returns
None or ``INSUFFICIENT`` and the caller falls back to pydicom, which stays the reference.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

_LONG_VRS: Final = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}
)
_PIXEL_TAGS: Final = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
_ITEM: Final = 0xFFFEE000
_ITEM_END: Final = 0xFFFEE00D
_SEQ_END: Final = 0xFFFEE0DD
_UNDEFINED: Final = 0xFFFFFFFF
_IMPLICIT_LE: Final = "1.2.840.10008.1.2"
_EXPLICIT_LE: Final = "1.2.840.10008.1.2.1"
# Tags whose presence sends the object to pydicom (functional groups, directory records).
_PYDICOM_ONLY: Final = frozenset({0x52009229, 0x52009230, 0x00041220})
_MAX_DEPTH: Final = 8


class _Insufficient:
    """The data ended before the pixel data element (a prefix that was too short)."""


INSUFFICIENT: Final = _Insufficient()


@dataclass(frozen=True)
class RawHeader:
    transfer_syntax: str
    media_sop_class: str
    elements: dict[int, tuple[bytes | None, bytes]]  # tag -> (explicit VR or None, value)
    pixel_offset: int | None  # offset of the pixel data element's tag, None if absent


class _UnsupportedError(Exception):
    """Internal: leave this object to pydicom."""


_IMPLICIT_HEAD = struct.Struct("<HHI")
_EXPLICIT_HEAD = struct.Struct("<HH2sH")
_U32 = struct.Struct("<I")


def _element_header(data: bytes, pos: int, explicit: bool) -> tuple[int, bytes | None, int, int]:
    """(tag, VR or None, value length, value offset) of the element at ``pos``.

    Raises struct.error when the data ends inside the element header.
    """
    if not explicit:
        group, element, length = _IMPLICIT_HEAD.unpack_from(data, pos)
        return (group << 16) | element, None, length, pos + 8
    group, element, vr, short_length = _EXPLICIT_HEAD.unpack_from(data, pos)
    if group == 0xFFFE:  # item and delimiter tags have no VR
        return (group << 16) | element, None, _U32.unpack_from(data, pos + 4)[0], pos + 8
    if vr in _LONG_VRS:
        return (group << 16) | element, vr, _U32.unpack_from(data, pos + 8)[0], pos + 12
    if not (65 <= vr[0] <= 90 and 65 <= vr[1] <= 90):
        raise _UnsupportedError
    return (group << 16) | element, vr, short_length, pos + 8


def _skip_undefined(data: bytes, pos: int, explicit: bool, depth: int) -> int:
    """Position after an undefined-length sequence whose items start at ``pos``."""
    if depth > _MAX_DEPTH:
        raise _UnsupportedError
    while True:
        tag, _, length, value = _element_header(data, pos, False)
        if tag == _SEQ_END:
            return value
        if tag != _ITEM:
            raise _UnsupportedError
        if length != _UNDEFINED:
            pos = value + length
            continue
        pos = value
        while True:  # elements of an undefined-length item
            tag, vr, length, value = _element_header(data, pos, explicit)
            if tag == _ITEM_END:
                pos = value
                break
            if length == _UNDEFINED:
                pos = _skip_undefined(data, value, explicit and vr != b"UN", depth + 1)
            else:
                pos = value + length


def _meta(data: bytes) -> tuple[dict[int, bytes], int]:
    """Group 0002 values and the position after it (always explicit VR LE)."""
    values: dict[int, bytes] = {}
    pos = 132
    while pos + 8 <= len(data) and data[pos] == 0x02 and data[pos + 1] == 0x00:
        tag, _, length, value = _element_header(data, pos, True)
        if length == _UNDEFINED:
            raise _UnsupportedError
        values[tag] = data[value : value + length]
        pos = value + length
    return values, pos


def _uid(raw: bytes | None) -> str:
    return raw.decode("ascii", "replace").strip(" \x00") if raw else ""


def walk_header(
    data: bytes, total_size: int, wanted: frozenset[int]
) -> RawHeader | _Insufficient | None:
    """Raw values of ``wanted`` tags, or None to use pydicom, or INSUFFICIENT for a short prefix."""
    if len(data) < 140 or data[128:132] != b"DICM":
        return None
    try:
        meta, pos = _meta(data)
        ts = _uid(meta.get(0x00020010))
        if ts != _IMPLICIT_LE and (
            not ts.startswith("1.2.840.10008.1.2.")
            or ts
            in (
                "1.2.840.10008.1.2.2",  # explicit VR big endian
                "1.2.840.10008.1.2.1.99",  # deflated
            )
        ):
            return None
        explicit = ts != _IMPLICIT_LE
        elements: dict[int, tuple[bytes | None, bytes]] = {}
        end = len(data)
        unpack_explicit, unpack_implicit = _EXPLICIT_HEAD.unpack_from, _IMPLICIT_HEAD.unpack_from
        unpack_u32 = _U32.unpack_from
        while pos < end:
            # Inlined _element_header (this loop runs ~80 times per object).
            vr: bytes | None = None
            if explicit:
                group, element, vr, length = unpack_explicit(data, pos)
                if group == 0xFFFE:
                    return None
                if vr in _LONG_VRS:
                    length, value = unpack_u32(data, pos + 8)[0], pos + 12
                elif 65 <= vr[0] <= 90 and 65 <= vr[1] <= 90:
                    value = pos + 8
                else:
                    return None
            else:
                group, element, length = unpack_implicit(data, pos)
                value = pos + 8
            tag = (group << 16) | element
            if tag in _PIXEL_TAGS:
                return RawHeader(ts, _uid(meta.get(0x00020002)), elements, pos)
            if tag in _PYDICOM_ONLY or group == 0xFFFE:
                return None
            if length == _UNDEFINED:
                pos = _skip_undefined(data, value, explicit and vr != b"UN", 0)
                continue
            if tag in wanted:
                if value + length > end:
                    raise IndexError("value runs past the data")
                elements[tag] = (vr, data[value : value + length])
            pos = value + length
    except (IndexError, struct.error):
        return INSUFFICIENT if len(data) < total_size else None
    except _UnsupportedError:
        return None
    if len(data) < total_size:
        return INSUFFICIENT
    return None  # no pixel data: let pydicom judge the object
