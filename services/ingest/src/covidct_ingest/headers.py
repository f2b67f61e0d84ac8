"""Parse one DICOM instance's header (never its pixels) into non-identifying facts.

The facts are stored as ``index/<series_key>/<instance_key>.json``; patient names, IDs and
birth dates are never read into an :class:`InstanceHeader`. Junk (empty, non-DICOM, truncated)
raises :class:`PermanentError` with code ``NOT_DICOM`` or ``CORRUPT_FILE``; a DICOMDIR raises
code ``DICOMDIR`` so callers can ignore it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

from covidct_core.errors import PermanentError
from covidct_ingest import codes
from covidct_ingest.dicom_values import (
    PydicomValues,
    RawValues,
    ValueSource,
    integer,
    number,
)
from covidct_ingest.dicom_values import get_value as _get
from covidct_ingest.enhanced import FrameFacts, enhanced_frame_facts
from covidct_ingest.fastparse import INSUFFICIENT, RawHeader, walk_header
from covidct_ingest.tags import BINARY_TAGS, WANTED_TAGS

PREFIX_SIZE = 64 * 1024
HEADER_FORMAT = 1
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
DEFLATED_TS = "1.2.840.10008.1.2.1.99"
_PIXEL_TAGS = (b"\xe0\x7f\x10\x00", b"\xe0\x7f\x08\x00", b"\xe0\x7f\x09\x00")
_SEQ_DELIMITER = b"\xfe\xff\xdd\xe0"
_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UN", b"UC", b"UR", b"UT"}
# SOP classes that legitimately carry no pixel data (SR, presentation states, waveforms...).
_NON_IMAGE_CLASS_PREFIXES = tuple(
    "1.2.840.10008.5.1.4.1.1." + suffix
    for suffix in ("88.", "11.", "9.", "66", "104.", "481.2", "481.3", "481.5", "481.8")
)

Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class InstanceHeader:
    """Header facts of one DICOM instance (no patient identifiers)."""

    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    study_instance_uid: str
    frame_of_reference_uid: str
    modality: str
    image_type: tuple[str, ...]
    instance_number: int | None
    series_number: int | None
    image_position: Vec3 | None
    image_orientation: tuple[float, float, float, float, float, float] | None
    pixel_spacing: tuple[float, float] | None  # DICOM order: (row spacing, column spacing)
    slice_thickness: float | None
    rows: int
    columns: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    samples_per_pixel: int
    photometric_interpretation: str
    rescale_slope: float
    rescale_intercept: float
    pixel_padding_value: int | None
    pixel_padding_range_limit: int | None
    transfer_syntax_uid: str
    number_of_frames: int
    images_in_acquisition: int | None
    gantry_detector_tilt: float | None
    series_description: str
    convolution_kernel: str
    manufacturer: str
    content_sha256: str | None
    size_bytes: int | None
    has_pixel_data: bool
    pixel_data_offset: int | None  # offset of the PixelData value in the object
    pixel_data_length: int | None  # None when encapsulated (undefined length)
    frame_positions: tuple[Vec3, ...] | None = None  # Enhanced multi-frame only
    frame_rescale: tuple[tuple[float, float], ...] | None = None  # per frame, when it varies
    format: int = HEADER_FORMAT

    @property
    def is_multiframe(self) -> bool:
        return self.frame_positions is not None

    @property
    def is_encapsulated(self) -> bool:
        """Pixel data located at a known offset with undefined length (compressed fragments)."""
        return self.pixel_data_offset is not None and self.pixel_data_length is None


def instance_key(header: InstanceHeader) -> str:
    """SOPInstanceUID, or ``sha256-<hex>`` of the content when the UID is empty."""
    if header.sop_instance_uid:
        return header.sop_instance_uid
    if header.content_sha256:
        return "sha256-" + header.content_sha256
    raise PermanentError(
        codes.MISSING_IDENTITY, "instance has no SOPInstanceUID and no content hash"
    )


# --------------------------------------------------------------------------- parsing


def _read_dataset(data: bytes) -> tuple[Dataset, int]:
    if not data:
        raise PermanentError(codes.NOT_DICOM, "empty object")
    has_preamble = len(data) >= 132 and data[128:132] == b"DICM"
    if not has_preamble and data[:2] not in (b"\x08\x00", b"\x02\x00"):
        raise PermanentError(codes.NOT_DICOM, "no DICM marker and no DICOM data set start")
    stream = io.BytesIO(data)
    try:
        ds = pydicom.dcmread(stream, stop_before_pixels=True, force=not has_preamble)
    except Exception as e:  # pydicom raises many types on garbage
        code = codes.CORRUPT_FILE if has_preamble else codes.NOT_DICOM
        raise PermanentError(code, f"cannot parse DICOM header: {type(e).__name__}") from e
    return ds, stream.tell()


def _transfer_syntax(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    value = str(_get(meta, "TransferSyntaxUID") or "") if meta is not None else ""
    if value:
        return value
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if implicit is False:
        return EXPLICIT_VR_LE if little else "1.2.840.10008.1.2.2"
    return IMPLICIT_VR_LE


@functools.lru_cache(maxsize=64)
def _syntax_kind(ts: str) -> str:
    """'implicit', 'explicit' (little endian, not deflated) or 'other'."""
    uid = UID(ts)
    if ts == DEFLATED_TS or not uid.is_transfer_syntax or not uid.is_little_endian:
        return "other"
    return "implicit" if uid.is_implicit_VR else "explicit"


def _pixel_element(data: bytes, pos: int, ts: str) -> tuple[int | None, int | None] | None:
    """(value offset, value length or None if undefined) of the pixel element at ``pos``."""
    if data[pos : pos + 4] not in _PIXEL_TAGS:
        return None
    kind = _syntax_kind(ts)
    if kind == "other":
        return (None, None)
    if kind == "implicit":
        header_len, length_bytes = 8, data[pos + 4 : pos + 8]
    elif data[pos + 4 : pos + 6] in _LONG_VRS:
        header_len, length_bytes = 12, data[pos + 8 : pos + 12]
    else:
        header_len, length_bytes = 8, data[pos + 6 : pos + 8]
    if len(length_bytes) not in (2, 4):
        return (pos + header_len, 0)
    length = int.from_bytes(length_bytes, "little")
    undefined = len(length_bytes) == 4 and length == 0xFFFFFFFF
    return (pos + header_len, None if undefined else length)


def _plain_text(raw: RawHeader) -> bool:
    """Every wanted text value is ASCII (else pydicom decodes it with the character set)."""
    return all(
        value.isascii() for tag, (_, value) in raw.elements.items() if tag not in BINARY_TAGS
    )


def _is_non_image_class(sop_class: str) -> bool:
    return sop_class.startswith(_NON_IMAGE_CLASS_PREFIXES)


def _build(
    values: ValueSource,
    facts: FrameFacts,
    pixel: tuple[int | None, int | None] | None,
    ts: str,
    size: int,
    sha256: str | None,
) -> InstanceHeader:
    rows = values.ushort(0x00280010, "Rows") or 0
    bits_allocated = values.ushort(0x00280100, "BitsAllocated") or 0
    signed = values.ushort(0x00280103, "PixelRepresentation") == 1
    image_type = values.text(0x00080008, "ImageType")
    return InstanceHeader(
        sop_instance_uid=values.text(0x00080018, "SOPInstanceUID"),
        sop_class_uid=values.text(0x00080016, "SOPClassUID"),
        series_instance_uid=values.text(0x0020000E, "SeriesInstanceUID"),
        study_instance_uid=values.text(0x0020000D, "StudyInstanceUID"),
        frame_of_reference_uid=values.text(0x00200052, "FrameOfReferenceUID"),
        modality=values.text(0x00080060, "Modality").upper(),
        image_type=tuple(v.upper() for v in image_type.split("\\")) if image_type else (),
        instance_number=integer(values, 0x00200013, "InstanceNumber"),
        series_number=integer(values, 0x00200011, "SeriesNumber"),
        image_position=facts.position,
        image_orientation=facts.orientation,
        pixel_spacing=facts.pixel_spacing,
        slice_thickness=facts.slice_thickness,
        rows=rows,
        columns=values.ushort(0x00280011, "Columns") or 0,
        bits_allocated=bits_allocated,
        bits_stored=values.ushort(0x00280101, "BitsStored") or bits_allocated,
        pixel_representation=1 if signed else 0,
        samples_per_pixel=values.ushort(0x00280002, "SamplesPerPixel") or 1,
        photometric_interpretation=values.text(0x00280004, "PhotometricInterpretation").upper(),
        rescale_slope=facts.rescale_slope,
        rescale_intercept=facts.rescale_intercept,
        pixel_padding_value=values.ushort(0x00280120, "PixelPaddingValue", signed=signed),
        pixel_padding_range_limit=values.ushort(
            0x00280121, "PixelPaddingRangeLimit", signed=signed
        ),
        transfer_syntax_uid=ts,
        number_of_frames=integer(values, 0x00280008, "NumberOfFrames") or 1,
        images_in_acquisition=integer(values, 0x00201002, "ImagesInAcquisition"),
        gantry_detector_tilt=number(values, 0x00181120, "GantryDetectorTilt"),
        series_description=values.text(0x0008103E, "SeriesDescription"),
        convolution_kernel=values.text(0x00181210, "ConvolutionKernel"),
        manufacturer=values.text(0x00080070, "Manufacturer"),
        content_sha256=sha256,
        size_bytes=size,
        has_pixel_data=pixel is not None,
        pixel_data_offset=pixel[0] if pixel else None,
        pixel_data_length=pixel[1] if pixel else None,
        frame_positions=facts.frame_positions,
        frame_rescale=facts.frame_rescale,
    )


def _check_complete(header: InstanceHeader, data: bytes, full: bool) -> None:
    if not header.has_pixel_data:
        if full and not _is_non_image_class(header.sop_class_uid):
            raise PermanentError(codes.CORRUPT_FILE, "image object without pixel data (truncated?)")
        return
    if header.pixel_data_offset is None:
        return
    size = header.size_bytes or len(data)
    if header.pixel_data_length is None:
        if full:
            tail = data[max(header.pixel_data_offset, len(data) - 1024) :]
            if _SEQ_DELIMITER not in tail:
                raise PermanentError(codes.CORRUPT_FILE, "encapsulated pixel data is truncated")
        return
    if header.pixel_data_offset + header.pixel_data_length > size:
        raise PermanentError(codes.CORRUPT_FILE, "pixel data is truncated")
    bits = header.bits_allocated
    frame_bytes = header.rows * header.columns * header.samples_per_pixel * bits // 8
    if bits >= 8 and header.pixel_data_length < frame_bytes * header.number_of_frames:
        raise PermanentError(codes.CORRUPT_FILE, "pixel data shorter than Rows x Columns x frames")


def _parse(data: bytes, total_size: int, sha256: str | None) -> InstanceHeader | None:
    """Header of an object whose first ``len(data)`` of ``total_size`` bytes are ``data``.

    Returns None when ``data`` is a prefix that ends before the pixel data.
    """
    with warnings.catch_warnings():
        # pydicom warns on every malformed value; the header facts tolerate them.
        warnings.simplefilter("ignore")
        return _parse_quietly(data, total_size, sha256)


def _parse_quietly(data: bytes, total_size: int, sha256: str | None) -> InstanceHeader | None:
    full = len(data) >= total_size
    raw = walk_header(data, total_size, WANTED_TAGS)
    if raw is INSUFFICIENT:
        return None
    if isinstance(raw, RawHeader) and _plain_text(raw):
        if raw.media_sop_class == DICOMDIR_SOP_CLASS:
            raise PermanentError(codes.DICOMDIR, "DICOMDIR (media directory), not an instance")
        values: ValueSource = RawValues(raw.elements)
        pixel = _pixel_element(data, raw.pixel_offset or 0, raw.transfer_syntax)
        header = _build(
            values, FrameFacts.from_values(values), pixel, raw.transfer_syntax, total_size, sha256
        )
    else:
        ds, stop = _read_dataset(data)
        meta = getattr(ds, "file_meta", None)
        media_class = str(_get(meta, "MediaStorageSOPClassUID") or "") if meta is not None else ""
        if media_class == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
            raise PermanentError(codes.DICOMDIR, "DICOMDIR (media directory), not an instance")
        ts = _transfer_syntax(ds)
        pixel = _pixel_element(data, stop, ts)
        if pixel is None and not full:
            return None
        values = PydicomValues(ds)
        facts = enhanced_frame_facts(ds) or FrameFacts.from_values(values)
        header = _build(values, facts, pixel, ts, total_size, sha256)
    _check_complete(header, data, full)
    return header


def parse_header(
    data: bytes, *, sha256: str | None = None, compute_sha256: bool = True
) -> InstanceHeader:
    """Header facts of a whole DICOM object held in memory."""
    if sha256 is None and compute_sha256:
        sha256 = hashlib.sha256(data).hexdigest()
    header = _parse(data, len(data), sha256)
    if header is None:  # pragma: no cover - a full object is never "insufficient"
        raise PermanentError(codes.CORRUPT_FILE, "cannot locate the end of the header")
    return header


def parse_header_prefix(
    prefix: bytes, total_size: int, *, sha256: str | None = None
) -> InstanceHeader | None:
    """Header facts from the first bytes of an object (e.g. a ranged GET of 64 KiB).

    Returns None when the prefix was not enough: it ends before the pixel data, or the
    instance has no SOPInstanceUID (its identity is then the content hash, which needs the
    whole object). The caller then fetches the whole object and calls :func:`parse_header`.
    """
    if len(prefix) < min(total_size, 256):
        return None  # too short even to tell DICOM from junk
    header = _parse(prefix, total_size, sha256)
    if header is None or (not header.sop_instance_uid and header.content_sha256 is None):
        return None
    return header


def read_header_file(
    path: Path, *, compute_sha256: bool = False, prefix_size: int = PREFIX_SIZE
) -> InstanceHeader:
    """Header facts of a file, reading only its first ``prefix_size`` bytes when enough.

    The whole file is read (and hashed) when the prefix is not enough, when the instance has
    no SOPInstanceUID (its key is then the content hash) or when ``compute_sha256`` is set.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            data = handle.read(size if compute_sha256 else prefix_size)
            if len(data) < size:
                header = _parse(data, size, None)
                if header is not None and header.sop_instance_uid:
                    if header.is_encapsulated:
                        handle.seek(max(0, size - 1024))
                        if _SEQ_DELIMITER not in handle.read():
                            raise PermanentError(
                                codes.CORRUPT_FILE, "encapsulated pixel data is truncated"
                            )
                    return header
                data += handle.read()
    except OSError as e:
        raise PermanentError(codes.CORRUPT_FILE, f"cannot read file: {e.strerror}") from e
    return parse_header(data, compute_sha256=True)


# --------------------------------------------------------------------------- JSON


def header_to_dict(header: InstanceHeader) -> dict[str, Any]:
    return dataclasses.asdict(header)


def header_to_json(header: InstanceHeader) -> str:
    return json.dumps(header_to_dict(header), sort_keys=True, separators=(",", ":"))


def _tuple_or_none(value: Any) -> tuple[Any, ...] | None:
    return None if value is None else tuple(value)


def header_from_dict(data: dict[str, Any]) -> InstanceHeader:
    values = dict(data)
    known = {f.name for f in dataclasses.fields(InstanceHeader)}
    unknown = set(values) - known
    if unknown:
        raise PermanentError(codes.CORRUPT_FILE, f"unknown header fields {sorted(unknown)}")
    for name in ("image_type", "image_position", "image_orientation", "pixel_spacing"):
        values[name] = _tuple_or_none(values.get(name))
    for name in ("frame_positions", "frame_rescale"):
        items = values.get(name)
        values[name] = None if items is None else tuple(tuple(v) for v in items)
    if values["image_type"] is None:
        values["image_type"] = ()
    try:
        return InstanceHeader(**values)
    except TypeError as e:
        raise PermanentError(codes.CORRUPT_FILE, f"invalid header JSON: {e}") from e


def header_from_json(text: str | bytes) -> InstanceHeader:
    try:
        data = json.loads(text)
    except ValueError as e:
        raise PermanentError(codes.CORRUPT_FILE, "header JSON is not valid JSON") from e
    if not isinstance(data, dict):
        raise PermanentError(codes.CORRUPT_FILE, "header JSON must be an object")
    return header_from_dict(data)
