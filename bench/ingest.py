"""Ingest benchmark: our DICOM -> .mha conversion against SimpleITK and a plain file read.

Generates a synthetic 300-slice 512x512 CT series (realistic header, random file names) in a
temporary folder, then times, best of N, in the same run:

* ours: header scan + grouping + selection + assembly + decode + HU + write .mha
  (``covidct_ingest.bag.ingest_paths`` + ``covidct_core.volume_io.write_mha``);
* sitk: ``GetGDCMSeriesFileNames`` (finding and ordering the series) + ``ImageSeriesReader``
  + int16 cast + uncompressed ``.mha`` write; also without the file-name discovery;
* raw: reading every file's bytes.

Prints ``ingest_ratio_vs_sitk`` (target <= 0.65) and ``ingest_ratio_vs_raw_read``
(target <= 10). Usage: ``python bench/ingest.py [--slices 300] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from covidct_core.volume_io import write_mha
from covidct_ingest.bag import ingest_paths


def _phantom(rows: int, cols: int, z: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Stored values (HU + 1024) of a crude chest: body ellipse, two lungs, noise."""
    yy, xx = np.mgrid[0:rows, 0:cols]
    cy, cx = rows / 2, cols / 2
    body = ((yy - cy) / (rows * 0.36)) ** 2 + ((xx - cx) / (cols * 0.45)) ** 2 <= 1
    scale = 0.6 + 0.4 * np.sin(np.pi * (z + 1) / (n + 1))
    lung_l = ((yy - cy) / (rows * 0.25 * scale)) ** 2 + ((xx - cx * 0.6) / (cols * 0.14)) ** 2 <= 1
    lung_r = ((yy - cy) / (rows * 0.25 * scale)) ** 2 + ((xx - cx * 1.4) / (cols * 0.14)) ** 2 <= 1
    hu = np.full((rows, cols), -1000.0)
    hu[body] = 40.0
    hu[lung_l | lung_r] = -850.0
    hu += rng.normal(0, 15, size=hu.shape)
    return np.clip(hu + 1024, 0, 4095).astype(np.uint16)


def write_series(folder: Path, slices: int, size: int = 512) -> list[Path]:
    """A synthetic CT series with a realistic header; file names are random."""
    rng = np.random.default_rng(0)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    paths = []
    for z in range(slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "HELIX"]
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = "20240101"
        ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = "120000"
        ds.AccessionNumber = "BENCH0001"
        ds.Modality = "CT"
        ds.Manufacturer = "Synthetic"
        ds.InstitutionName = "Bench Hospital"
        ds.ReferringPhysicianName = "Doe^Ref"
        ds.StationName = "CT01"
        ds.StudyDescription = "CHEST"
        ds.SeriesDescription = "Chest 1.0 B40f"
        ds.ManufacturerModelName = "Bench CT"
        ds.PatientName = "Bench^Patient"
        ds.PatientID = "BENCH-0001"
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "O"
        ds.PatientAge = "054Y"
        ds.BodyPartExamined = "CHEST"
        ds.ScanOptions = "HELICAL MODE"
        ds.SliceThickness = "1.0"
        ds.KVP = "120"
        ds.DataCollectionDiameter = "500"
        ds.SoftwareVersions = "VB10"
        ds.ReconstructionDiameter = "350"
        ds.DistanceSourceToDetector = "1085.6"
        ds.DistanceSourceToPatient = "595"
        ds.GantryDetectorTilt = "0"
        ds.TableHeight = "150"
        ds.RotationDirection = "CW"
        ds.ExposureTime = "500"
        ds.XRayTubeCurrent = "200"
        ds.Exposure = "100"
        ds.FilterType = "0"
        ds.GeneratorPower = "24"
        ds.FocalSpots = "1.2"
        ds.ConvolutionKernel = "B40f"
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.StudyID = "1"
        ds.SeriesNumber = "2"
        ds.AcquisitionNumber = "1"
        ds.InstanceNumber = str(z + 1)
        ds.ImagePositionPatient = ["-175.0", "-175.0", f"{-300.0 + z * 1.0:.1f}"]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.FrameOfReferenceUID = frame
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = f"{-300.0 + z * 1.0:.1f}"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = size
        ds.Columns = size
        ds.PixelSpacing = ["0.68359375", "0.68359375"]
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.WindowCenter = "40"
        ds.WindowWidth = "400"
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.PixelData = _phantom(size, size, z, slices, rng).tobytes()
        path = folder / secrets.token_hex(8)
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def best_times(
    repeats: int, funcs: dict[str, Callable[[], object]], cleanup: Callable[[], None]
) -> dict[str, float]:
    """Best wall time of each function; runs are interleaved so all see the same conditions."""
    best = {name: float("inf") for name in funcs}
    for _ in range(repeats):
        for name, func in funcs.items():
            start = time.perf_counter()
            func()
            best[name] = min(best[name], time.perf_counter() - start)
            cleanup()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--settle", type=float, default=0.2, help="seconds of quiet per run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="covidct-bench-") as tmp:
        root = Path(tmp)
        series_dir = root / "in"
        series_dir.mkdir()
        paths = write_series(series_dir, args.slices)
        out_dir = root / "out"
        out_dir.mkdir()
        counter = iter(range(1_000_000))
        out_ours, out_sitk = out_dir / "ours.mha", out_dir / "sitk.mha"

        def fresh(name: str) -> Path:
            # A new output file per run: replacing a 150 MB file would time its deletion.
            return out_dir / f"{name}-{next(counter)}.mha"

        def ours() -> None:
            nonlocal out_ours
            report = ingest_paths(series_dir)
            (outcome,) = report.outcomes
            if outcome.result is None:
                raise SystemExit(f"conversion failed: {outcome.code} {outcome.reason}")
            out_ours = fresh("ours")
            write_mha(out_ours, outcome.result.volume)

        def sitk_read(discover: bool) -> Callable[[], None]:
            sorted_names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(series_dir))

            def run() -> None:
                nonlocal out_sitk
                names = (
                    sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(series_dir))
                    if discover
                    else sorted_names
                )
                reader = sitk.ImageSeriesReader()
                reader.SetFileNames(names)
                image = sitk.Cast(reader.Execute(), sitk.sitkInt16)
                out_sitk = fresh("sitk")
                sitk.WriteImage(image, str(out_sitk), False)

            return run

        def raw_read() -> None:
            for path in paths:
                with path.open("rb") as handle:
                    handle.read()

        sitk_full, sitk_plain = sitk_read(True), sitk_read(False)
        for func in (raw_read, ours, sitk_full):  # warm the page cache and imports
            func()

        def cleanup() -> None:
            """Outside the timed region: drop old outputs and let the disk settle.

            Deleting a 150 MB file on this ext4 (mounted with ``discard``) and the writeback
            of the last output otherwise slow down whichever run comes next.
            """
            for path in out_dir.glob("*.mha"):
                if path not in (out_ours, out_sitk):
                    path.unlink()
            os.sync()
            time.sleep(args.settle)
            # This VM backs freed memory lazily: the first touch of cold pages costs ~3 ms/MB.
            # Touch 1 GB (then free it) so every contender starts from the same warm state.
            warm = np.ones(512 * 1024 * 1024, dtype=np.int16)
            del warm

        best = best_times(
            args.repeats,
            {"ours": ours, "sitk": sitk_full, "sitk_plain": sitk_plain, "raw": raw_read},
            cleanup,
        )
        t_ours, t_sitk, t_sitk_plain, t_raw = (
            best["ours"],
            best["sitk"],
            best["sitk_plain"],
            best["raw"],
        )
        same = np.array_equal(
            sitk.GetArrayFromImage(sitk.ReadImage(str(out_sitk))),
            sitk.GetArrayFromImage(sitk.ReadImage(str(out_ours))),
        )
    print(f"slices: {args.slices}  repeats: {args.repeats}  voxels_equal_to_sitk: {same}")
    print(f"ours_s: {t_ours:.3f}")
    print(f"sitk_s (GetGDCMSeriesFileNames + ImageSeriesReader + cast + write): {t_sitk:.3f}")
    print(f"sitk_s without file-name discovery: {t_sitk_plain:.3f}")
    print(f"raw_read_s: {t_raw:.3f}")
    print(f"ingest_ratio_vs_sitk: {t_ours / t_sitk:.3f}")
    print(f"ingest_ratio_vs_sitk_without_discovery: {t_ours / t_sitk_plain:.3f}")
    print(f"ingest_ratio_vs_raw_read: {t_ours / t_raw:.3f}")


if __name__ == "__main__":
    main()
