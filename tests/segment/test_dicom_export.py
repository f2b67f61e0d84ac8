"""The phantom DICOM writer: a CT series that SimpleITK and pydicom read back exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

from covidct.dicom_export import SeriesInfo, write_ct_series
from covidct_core.phantom import PhantomOptions, make_chest_phantom
from covidct_core.volume_io import from_sitk

OPTIONS = PhantomOptions(spacing=(2.5, 2.5, 5.0), fov_mm=300.0, z_extent_mm=100.0)


def _read(directory: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(directory)))
    return reader.Execute()


def test_series_round_trips_geometry_and_hu(tmp_path: Path) -> None:
    volume = make_chest_phantom(1, OPTIONS).volume
    paths = write_ct_series(volume, tmp_path)
    assert len(paths) == volume.array.shape[0]
    back = from_sitk(_read(tmp_path))
    assert np.array_equal(back.array.astype(np.int16), volume.array)
    assert np.allclose(back.spacing, volume.spacing, atol=1e-4)
    assert np.allclose(back.origin, volume.origin, atol=1e-3)
    assert np.allclose(back.direction, volume.direction, atol=1e-6)


def test_flipped_right_handed_geometry(tmp_path: Path) -> None:
    options = PhantomOptions(**{**OPTIONS.__dict__, "flip_axes": (True, False, True)})
    volume = make_chest_phantom(1, options).volume
    write_ct_series(volume, tmp_path)
    back = from_sitk(_read(tmp_path))
    assert np.allclose(back.direction, volume.direction, atol=1e-6)
    assert np.allclose(back.origin, volume.origin, atol=1e-3)
    assert np.array_equal(back.array.astype(np.int16), volume.array)


def test_headers_are_ct_image_storage_with_synthetic_identity(tmp_path: Path) -> None:
    volume = make_chest_phantom(1, OPTIONS).volume
    paths = write_ct_series(volume, tmp_path, SeriesInfo(uid_seed="abc"))
    first = pydicom.dcmread(paths[0])
    assert first.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert first.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert list(first.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert first.Modality == "CT" and first.RescaleIntercept == -1024
    assert first.PatientName == "PHANTOM^SYNTHETIC" and first.PatientBirthDate == ""
    assert float(first.SliceThickness) == 5.0
    assert [float(v) for v in first.PixelSpacing] == [2.5, 2.5]
    uids = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in paths}
    assert len(uids) == len(paths)
    again = write_ct_series(volume, tmp_path / "again", SeriesInfo(uid_seed="abc"))
    assert pydicom.dcmread(again[0]).SeriesInstanceUID == first.SeriesInstanceUID
    other = write_ct_series(volume, tmp_path / "other", SeriesInfo(uid_seed="xyz"))
    assert pydicom.dcmread(other[0]).SeriesInstanceUID != first.SeriesInstanceUID
