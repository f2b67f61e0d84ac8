"""covidct_core.volume_io: exact geometry round trips, compatible with SimpleITK."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from covidct_core.errors import PermanentError
from covidct_core.volume_io import (
    Volume,
    from_sitk,
    read_mha,
    read_mha_bytes,
    to_mha_bytes,
    to_sitk,
    write_mha,
)

OBLIQUE = tuple(
    np.linalg.qr(np.array([[0.9, 0.2, 0.1], [-0.3, 0.8, 0.4], [0.1, -0.5, 0.85]]))[0].ravel()
)


def make_volume(dtype: type = np.int16) -> Volume:
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype)
    array = rng.integers(info.min, info.max, size=(5, 7, 11), dtype=dtype)
    return Volume(array, (0.7031250000001, 0.68, 2.5), (-172.5, -180.0, 1e-7 - 245.0), OBLIQUE)


@pytest.mark.parametrize("dtype", [np.int16, np.uint8])
def test_write_read_round_trip_is_exact(tmp_path: Path, dtype: type) -> None:
    volume = make_volume(dtype)
    path = tmp_path / "v.mha"
    written = write_mha(path, volume)
    assert written == path.stat().st_size
    back = read_mha(path)
    assert back.array.dtype == volume.array.dtype
    assert np.array_equal(back.array, volume.array)
    assert back.spacing == volume.spacing
    assert back.origin == volume.origin
    assert back.direction == pytest.approx(volume.direction, abs=0, rel=0)
    assert not (tmp_path / "v.mha.tmp").exists()


def test_simpleitk_reads_our_file_with_the_same_geometry(tmp_path: Path) -> None:
    volume = make_volume()
    path = tmp_path / "v.mha"
    write_mha(path, volume)
    image = sitk.ReadImage(str(path))
    assert image.GetSize() == volume.shape_xyz
    assert image.GetSpacing() == volume.spacing
    assert image.GetOrigin() == volume.origin
    assert np.allclose(image.GetDirection(), volume.direction, atol=1e-12)
    assert np.array_equal(sitk.GetArrayFromImage(image), volume.array)


def test_we_read_simpleitk_files_compressed_or_not(tmp_path: Path) -> None:
    volume = make_volume()
    for compress in (False, True):
        path = tmp_path / f"s{compress}.mha"
        sitk.WriteImage(to_sitk(volume), str(path), compress)
        back = read_mha(path)
        assert np.array_equal(back.array, volume.array)
        assert np.allclose(back.direction, volume.direction, atol=1e-12)
        assert np.allclose(back.origin, volume.origin, atol=1e-9)
        assert np.allclose(back.spacing, volume.spacing, atol=1e-12)


def test_bytes_round_trip_and_sitk_conversion() -> None:
    volume = make_volume()
    back = read_mha_bytes(to_mha_bytes(volume))
    assert back.same_geometry(volume, tol=0)
    assert np.array_equal(back.array, volume.array)
    via_sitk = from_sitk(to_sitk(volume))
    assert via_sitk.same_geometry(volume, tol=1e-12)


def test_compressed_round_trip_and_interop(tmp_path: Path) -> None:
    """zlib-compressed MetaImage (how masks are stored): exact round trip, SimpleITK reads
    it with the same voxels and geometry, and a mask shrinks to a fraction of its size."""
    volume = make_volume()
    data = to_mha_bytes(volume, compress_level=1)
    assert b"CompressedData = True" in data and b"CompressedDataSize = " in data
    back = read_mha_bytes(data)
    assert back.same_geometry(volume, tol=0) and np.array_equal(back.array, volume.array)
    path = tmp_path / "c.mha"
    path.write_bytes(data)
    assert np.array_equal(read_mha(path).array, volume.array)
    image = sitk.ReadImage(str(path))
    assert image.GetSpacing() == volume.spacing and image.GetOrigin() == volume.origin
    assert np.array_equal(sitk.GetArrayFromImage(image), volume.array)
    mask = np.zeros((40, 64, 64), np.uint8)
    mask[5:35, 10:50, 8:30] = 1
    packed = to_mha_bytes(Volume(mask, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)), compress_level=1)
    assert len(packed) < 0.02 * mask.nbytes
    # the mostly-zero mask is written as precompressed zero blocks + compressed runs: ITK too
    # inflates that one stream to the same voxels
    (tmp_path / "m.mha").write_bytes(packed)
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "m.mha"))), mask)


def test_corrupt_compressed_data_is_a_permanent_error() -> None:
    data = bytearray(to_mha_bytes(make_volume(), compress_level=1))
    data[-40:-20] = bytes(20)
    with pytest.raises(PermanentError) as err:
        read_mha_bytes(bytes(data))
    assert err.value.code == "CORRUPT_FILE"


def test_index_and_physical_points_are_inverse() -> None:
    volume = make_volume()
    indices = np.array([[0, 0, 0], [10, 6, 4], [2.5, 3.25, 1.5]])
    points = volume.index_to_physical(indices)
    assert np.allclose(points[0], volume.origin)
    assert np.allclose(volume.physical_to_index(points), indices, atol=1e-9)
    image = to_sitk(volume)
    expected = image.TransformContinuousIndexToPhysicalPoint(tuple(indices[2]))
    assert np.allclose(points[2], expected, atol=1e-9)


def test_truncated_file_is_a_permanent_error(tmp_path: Path) -> None:
    data = to_mha_bytes(make_volume())
    with pytest.raises(PermanentError) as err:
        read_mha_bytes(data[:-10])
    assert err.value.code == "CORRUPT_FILE"
    path = tmp_path / "t.mha"
    path.write_bytes(data[:-10])
    with pytest.raises(PermanentError):
        read_mha(path)


def test_invalid_volumes_are_refused() -> None:
    with pytest.raises(ValueError):
        Volume(np.zeros((2, 2), np.int16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    with pytest.raises(ValueError):
        Volume(np.zeros((2, 2, 2), np.int16), (1.0, 0.0, 1.0), (0.0, 0.0, 0.0))
