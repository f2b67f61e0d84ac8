"""Write a HU volume as a realistic single-frame CT DICOM series (CT Image Storage).

Geometry comes from the volume: ImageOrientationPatient from the direction's first two
columns, ImagePositionPatient per slice from the origin, PixelSpacing (row, column) and
SliceThickness from the spacing. Pixels are signed 16-bit with RescaleIntercept -1024.
Only synthetic identity is written (no real patient data); UIDs are random, or derived from
``uid_seed`` so that the same seed gives the same UIDs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)

from covidct_core.volume_io import Volume

RESCALE_INTERCEPT = -1024
STORED_MIN, STORED_MAX = -32768, 32767


@dataclass(frozen=True)
class SeriesInfo:
    """Synthetic identity and acquisition facts written into every slice."""

    patient_name: str = "PHANTOM^SYNTHETIC"
    patient_id: str = "COVIDCT-PHANTOM"
    study_description: str = "Synthetic chest CT"
    series_description: str = "covidct phantom"
    series_number: int = 1
    manufacturer: str = "covidct"
    model_name: str = "synthetic phantom"
    kernel: str = "STANDARD"
    kvp: str = "120"
    study_datetime: datetime = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    uid_seed: str | None = None


def _uid(info: SeriesInfo, *parts: str) -> UID:
    if info.uid_seed is None:
        return generate_uid()
    return generate_uid(entropy_srcs=[info.uid_seed, *parts])


def _direction_cosines(volume: Volume) -> tuple[list[float], list[float], np.ndarray]:
    matrix = volume.direction_matrix()
    return matrix[:, 0].tolist(), matrix[:, 1].tolist(), matrix[:, 2]


def write_ct_series(volume: Volume, out_dir: Path, info: SeriesInfo | None = None) -> list[Path]:
    """Write one file per axial slice (``IM0001.dcm`` ...); returns the paths in slice order."""
    meta = info or SeriesInfo()
    out_dir.mkdir(parents=True, exist_ok=True)
    study_uid = _uid(meta, "study")
    series_uid = _uid(meta, "series", str(meta.series_number))
    frame_uid = _uid(meta, "frame")
    row, col, normal = _direction_cosines(volume)
    hu = np.asarray(volume.array)
    stored = np.clip(np.rint(hu.astype(np.float64) - RESCALE_INTERCEPT), STORED_MIN, STORED_MAX)
    stored_i16 = stored.astype("<i2")
    paths = []
    for k in range(hu.shape[0]):
        position = volume.index_to_physical([0.0, 0.0, float(k)])
        ds = _slice_dataset(volume, meta, row, col, position, k)
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.SOPInstanceUID = _uid(meta, "instance", str(meta.series_number), str(k))
        ds.SliceLocation = f"{float(np.dot(position, normal)):.3f}"
        ds.PixelData = np.ascontiguousarray(stored_i16[k]).tobytes()
        ds.file_meta = _file_meta(ds.SOPInstanceUID)
        path = out_dir / f"IM{k + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _file_meta(sop_uid: UID) -> FileMetaDataset:
    file_meta = FileMetaDataset()
    file_meta.MediaStorageSOPClassUID = CTImageStorage
    file_meta.MediaStorageSOPInstanceUID = sop_uid
    file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return file_meta


def _slice_dataset(
    volume: Volume,
    meta: SeriesInfo,
    row: list[float],
    col: list[float],
    position: np.ndarray,
    k: int,
) -> Dataset:
    when = meta.study_datetime
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = meta.patient_name
    ds.PatientID = meta.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyDate = when.strftime("%Y%m%d")
    ds.StudyTime = when.strftime("%H%M%S")
    ds.SeriesDate = ds.StudyDate
    ds.SeriesTime = ds.StudyTime
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.StudyDescription = meta.study_description
    ds.SeriesDescription = meta.series_description
    ds.SeriesNumber = meta.series_number
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = k + 1
    ds.Manufacturer = meta.manufacturer
    ds.ManufacturerModelName = meta.model_name
    ds.BodyPartExamined = "CHEST"
    ds.PatientPosition = "HFS"
    ds.PositionReferenceIndicator = ""
    ds.KVP = meta.kvp
    ds.ConvolutionKernel = meta.kernel
    ds.ImagePositionPatient = [f"{float(v):.4f}" for v in position]
    ds.ImageOrientationPatient = [f"{float(v):.6f}" for v in (*row, *col)]
    ds.PixelSpacing = [f"{volume.spacing[1]:.6g}", f"{volume.spacing[0]:.6g}"]
    ds.SliceThickness = f"{volume.spacing[2]:.6g}"
    ds.SpacingBetweenSlices = f"{volume.spacing[2]:.6g}"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(volume.array.shape[1]), int(volume.array.shape[2])
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = str(RESCALE_INTERCEPT)
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter = "-600"
    ds.WindowWidth = "1500"
    return ds
