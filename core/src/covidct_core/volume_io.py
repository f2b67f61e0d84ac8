"""Read and write 3D volumes as MetaImage (``.mha``) with exact geometry.

A :class:`Volume` holds a numpy array in (z, y, x) order plus ITK geometry: ``spacing`` and
``origin`` in (x, y, z) order and ``direction`` as 9 floats, row-major, exactly as
``SimpleITK.Image.GetDirection()`` returns it (column ``j`` is the patient-space direction of
array axis ``j`` in x, y, z order).

Uncompressed ``.mha`` files are written and read by a small raw writer/reader (one header,
then the voxel bytes) that formats floats with ``repr`` so geometry survives a round trip bit
for bit. Anything else (compressed data, other MetaImage variants) is read with SimpleITK.
"""

from __future__ import annotations

import os
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from covidct_core.errors import PermanentError
from covidct_core.sparse_zlib import compress_sparse

Vec3 = tuple[float, float, float]
IDENTITY_DIRECTION: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

_MET_TYPES: dict[str, np.dtype[Any]] = {
    "MET_UCHAR": np.dtype("<u1"),
    "MET_CHAR": np.dtype("<i1"),
    "MET_SHORT": np.dtype("<i2"),
    "MET_USHORT": np.dtype("<u2"),
    "MET_INT": np.dtype("<i4"),
    "MET_UINT": np.dtype("<u4"),
    "MET_FLOAT": np.dtype("<f4"),
    "MET_DOUBLE": np.dtype("<f8"),
}
_DTYPE_TO_MET = {dtype.str: name for name, dtype in _MET_TYPES.items()}
_HEADER_LIMIT = 64 * 1024


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D image: ``array`` in (z, y, x) order with ITK geometry in (x, y, z) order."""

    array: npt.NDArray[Any]
    spacing: Vec3
    origin: Vec3
    direction: tuple[float, ...] = IDENTITY_DIRECTION

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"volume array must be 3D (z, y, x), got shape {self.array.shape}")
        if len(self.spacing) != 3 or len(self.origin) != 3 or len(self.direction) != 9:
            raise ValueError("spacing and origin need 3 values, direction needs 9")
        if any(not s > 0 for s in self.spacing):
            raise ValueError(f"spacing must be positive, got {self.spacing}")

    @property
    def shape_xyz(self) -> tuple[int, int, int]:
        z, y, x = self.array.shape
        return int(x), int(y), int(z)

    def direction_matrix(self) -> npt.NDArray[np.float64]:
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3)

    def index_to_physical(self, index_xyz: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Patient-space point(s) of continuous index (x, y, z); accepts shape (3,) or (n, 3)."""
        idx = np.asarray(index_xyz, dtype=np.float64)
        scaled = idx * np.asarray(self.spacing)
        return np.asarray(np.asarray(self.origin) + scaled @ self.direction_matrix().T, np.float64)

    def physical_to_index(self, point_xyz: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Continuous index (x, y, z) of patient-space point(s); inverse of index_to_physical."""
        pts = np.asarray(point_xyz, dtype=np.float64) - np.asarray(self.origin)
        inv = np.linalg.inv(self.direction_matrix() * np.asarray(self.spacing))
        return np.asarray(pts @ inv.T, dtype=np.float64)

    def same_geometry(self, other: Volume, tol: float = 1e-6) -> bool:
        return (
            self.array.shape == other.array.shape
            and np.allclose(self.spacing, other.spacing, atol=tol, rtol=0)
            and np.allclose(self.origin, other.origin, atol=tol, rtol=0)
            and np.allclose(self.direction, other.direction, atol=tol, rtol=0)
        )


def _fmt(values: tuple[float, ...] | list[float]) -> str:
    return " ".join(repr(float(v)) for v in values)


def mha_header(volume: Volume, compressed_size: int | None = None) -> bytes:
    """The text header of a single-file MetaImage for ``volume``: uncompressed, or a zlib
    stream of ``compressed_size`` bytes."""
    key = volume.array.dtype.newbyteorder("<").str
    met = _DTYPE_TO_MET.get(key)
    if met is None:
        raise ValueError(f"unsupported voxel type {volume.array.dtype}")
    matrix = np.asarray(volume.direction, dtype=np.float64).reshape(3, 3)
    x, y, z = volume.shape_xyz
    lines = [
        "ObjectType = Image",
        "NDims = 3",
        "BinaryData = True",
        "BinaryDataByteOrderMSB = False",
        "CompressedData = False" if compressed_size is None else "CompressedData = True",
        # MetaIO stores the matrix column by column (the transpose of ITK's row-major order).
        f"TransformMatrix = {_fmt(list(matrix.T.ravel()))}",
        f"Offset = {_fmt(volume.origin)}",
        "CenterOfRotation = 0 0 0",
        f"ElementSpacing = {_fmt(volume.spacing)}",
        f"DimSize = {x} {y} {z}",
        f"ElementType = {met}",
        "ElementDataFile = LOCAL",
    ]
    if compressed_size is not None:
        lines.insert(-1, f"CompressedDataSize = {compressed_size}")
    return ("\n".join(lines) + "\n").encode("ascii")


def _voxel_bytes(volume: Volume) -> memoryview:
    array = volume.array
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return np.ascontiguousarray(array).data.cast("B")


def to_mha_bytes(volume: Volume, compress_level: int | None = None) -> bytes:
    """The whole ``.mha`` file as bytes: uncompressed (the voxels are copied once), or with
    the voxels as one zlib stream at ``compress_level`` (1 is fast and shrinks a binary mask
    about a hundredfold; readers such as ITK, SimpleITK and 3D Slicer read it). All-zero
    stretches cost almost nothing to compress (:mod:`covidct_core.sparse_zlib`)."""
    voxels = _voxel_bytes(volume)
    if compress_level is None:
        return b"".join((mha_header(volume), voxels))
    packed = compress_sparse(np.frombuffer(voxels, dtype=np.uint8), compress_level)
    return b"".join((mha_header(volume, len(packed)), packed))


def write_mha(path: Path, volume: Volume) -> int:
    """Write ``volume`` atomically (via ``<path>.tmp``) as uncompressed ``.mha``; returns bytes."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    header = mha_header(volume)
    data = _voxel_bytes(volume)
    with tmp.open("wb") as handle:
        handle.write(header)
        handle.write(data)
    os.replace(tmp, path)
    return len(header) + data.nbytes


def _parse_header(blob: bytes) -> tuple[dict[str, str], int] | None:
    """Fields and data offset of a raw LOCAL MetaImage header, or None if not one we read."""
    marker = blob.find(b"ElementDataFile")
    if marker < 0:
        return None
    end = blob.find(b"\n", marker)
    if end < 0:
        return None
    fields: dict[str, str] = {}
    for raw_line in blob[:end].decode("ascii", errors="replace").splitlines():
        if "=" in raw_line:
            name, _, value = raw_line.partition("=")
            fields[name.strip()] = value.strip()
    simple = (
        fields.get("ElementDataFile") == "LOCAL"
        and fields.get("NDims") == "3"
        and fields.get("CompressedData", "False") in ("False", "True")
        and fields.get("BinaryDataByteOrderMSB", "False") == "False"
        and fields.get("ElementType") in _MET_TYPES
        and fields.get("ElementNumberOfChannels", "1") == "1"
        and "HeaderSize" not in fields
    )
    return (fields, end + 1) if simple else None


def _floats(text: str, count: int) -> tuple[float, ...]:
    values = tuple(float(v) for v in text.split())
    if len(values) != count:
        raise ValueError(f"expected {count} values, got {text!r}")
    return values


def _shape_and_type(fields: dict[str, str]) -> tuple[tuple[int, int, int], np.dtype[Any]]:
    x, y, z = (int(v) for v in fields["DimSize"].split())
    return (z, y, x), _MET_TYPES[fields["ElementType"]]


def _volume_from_fields(fields: dict[str, str], array: npt.NDArray[Any]) -> Volume:
    matrix_text = (
        fields.get("TransformMatrix") or fields.get("Rotation") or fields.get("Orientation")
    )
    direction = IDENTITY_DIRECTION
    if matrix_text:
        direction = tuple(np.asarray(_floats(matrix_text, 9)).reshape(3, 3).T.ravel().tolist())
    origin_text = fields.get("Offset") or fields.get("Origin") or fields.get("Position") or "0 0 0"
    spacing_text = fields.get("ElementSpacing") or fields.get("ElementSize") or "1 1 1"
    ox, oy, oz = _floats(origin_text, 3)
    sx, sy, sz = _floats(spacing_text, 3)
    native = array.astype(array.dtype.newbyteorder("="), copy=False)
    return Volume(native, (sx, sy, sz), (ox, oy, oz), direction)


def _from_sitk(image: sitk.Image) -> Volume:
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise PermanentError("CORRUPT_FILE", "expected a scalar 3D image")
    sx, sy, sz = image.GetSpacing()
    ox, oy, oz = image.GetOrigin()
    return Volume(
        sitk.GetArrayFromImage(image), (sx, sy, sz), (ox, oy, oz), tuple(image.GetDirection())
    )


def read_mha_bytes(data: bytes) -> Volume:
    """Parse a whole ``.mha`` file held in memory."""
    parsed = _parse_header(data[:_HEADER_LIMIT])
    if parsed is not None:
        fields, offset = parsed
        shape, dtype = _shape_and_type(fields)
        count = shape[0] * shape[1] * shape[2]
        voxels: bytes | memoryview = memoryview(data)[offset:]
        if fields.get("CompressedData") == "True":
            voxels = _inflate(voxels, count * dtype.itemsize)
        if len(voxels) < count * dtype.itemsize:
            raise PermanentError("CORRUPT_FILE", "MetaImage voxel data is truncated")
        # read-only when ``data`` is bytes: the stages only read volumes
        flat = np.frombuffer(voxels, dtype=dtype, count=count)
        return _volume_from_fields(fields, flat.reshape(shape))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "volume.mha"
        path.write_bytes(data)
        return read_mha(path)


def _inflate(stream: bytes | memoryview, size: int) -> bytes:
    try:
        return zlib.decompress(stream, bufsize=size)
    except zlib.error as e:
        raise PermanentError("CORRUPT_FILE", f"MetaImage zlib data is corrupt: {e}") from e


def read_mha(path: Path) -> Volume:
    """Read a ``.mha`` (or any single-file image SimpleITK reads) into a :class:`Volume`."""
    path = Path(path)
    with path.open("rb") as handle:
        head = handle.read(_HEADER_LIMIT)
        parsed = _parse_header(head)
        if parsed is not None and parsed[0].get("CompressedData") == "True":
            handle.seek(0)
            return read_mha_bytes(handle.read())
        if parsed is not None:
            fields, offset = parsed
            shape, dtype = _shape_and_type(fields)
            count = shape[0] * shape[1] * shape[2]
            handle.seek(offset)
            flat = np.fromfile(handle, dtype=dtype, count=count)
            if flat.size != count:
                raise PermanentError("CORRUPT_FILE", "MetaImage voxel data is truncated")
            return _volume_from_fields(fields, flat.reshape(shape))
    try:
        return _from_sitk(sitk.ReadImage(str(path)))
    except RuntimeError as e:
        raise PermanentError("CORRUPT_FILE", f"cannot read image: {e}") from e


def read_reference_series(directory: Path) -> Volume:
    """The first DICOM series in ``directory`` as int16 HU, read by SimpleITK/GDCM.

    For training scripts, tests and benchmarks that need a reference reading of the shared
    sample data; the pipeline itself reads DICOM through the ingest stage."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(directory)))
    volume = _from_sitk(reader.Execute())
    return Volume(volume.array.astype(np.int16), volume.spacing, volume.origin, volume.direction)


def read_reference_image(path: Path) -> Volume:
    """A single-file image (NRRD, NIfTI, MetaImage) as int16, read by SimpleITK."""
    volume = _from_sitk(sitk.ReadImage(str(path)))
    return Volume(volume.array.astype(np.int16), volume.spacing, volume.origin, volume.direction)


def to_sitk(volume: Volume) -> sitk.Image:
    """A SimpleITK image with the same voxels and geometry."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array))
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    image.SetDirection(volume.direction)
    return image


def from_sitk(image: sitk.Image) -> Volume:
    """A :class:`Volume` with the voxels and geometry of a 3D scalar SimpleITK image."""
    return _from_sitk(image)
