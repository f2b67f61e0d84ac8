"""Acceptance on the real public samples: voxels and geometry against SimpleITK, edge cases."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from scipy.ndimage import map_coordinates

from covidct_core.errors import PermanentError
from covidct_core.volume_io import Volume
from covidct_ingest.bag import SeriesOutcome, ingest_paths
from covidct_ingest.config import DEFAULT_CONFIG
from covidct_ingest.convert import convert_series
from tests.ingest.conftest import dicom_files, sitk_int16, sitk_series

RAW_HU = DEFAULT_CONFIG.with_changes(
    conversion={"map_padding_to_air": False, "clip_below_air": False}
)


def only(outcomes: list[SeriesOutcome], status: str) -> list[SeriesOutcome]:
    return [o for o in outcomes if o.status == status]


def assert_matches_sitk(volume: Volume, image: sitk.Image, reference: np.ndarray) -> None:
    assert np.array_equal(volume.array, reference)
    assert np.allclose(volume.spacing, image.GetSpacing(), atol=1e-4, rtol=0)
    assert np.allclose(volume.origin, image.GetOrigin(), atol=1e-4, rtol=0)
    assert np.allclose(volume.direction, image.GetDirection(), atol=1e-4, rtol=0)


@pytest.mark.parametrize("which", [0, 1, 2, 3, "lidc"])
def test_real_series_equal_simpleitk_with_shuffled_random_names(
    which: int | str,
    tcia_dirs: list[Path],
    lidc_dir: Path,
    random_view: Callable[..., Path],
) -> None:
    folder = lidc_dir if which == "lidc" else tcia_dirs[int(which)]
    image = sitk_series(folder)
    reference = sitk_int16(image)
    bag = random_view(dicom_files(folder), seed=hash(str(which)) % 1000)
    report = ingest_paths(bag, RAW_HU)
    (outcome,) = report.outcomes
    assert outcome.status == "converted", outcome.reason
    assert outcome.result is not None
    assert_matches_sitk(outcome.result.volume, image, reference)
    # Default conversion: padding and anything below air become -1024, nothing else changes.
    default = ingest_paths(bag).outcomes[0].result
    assert default is not None
    header = pydicom.dcmread(dicom_files(folder)[0], stop_before_pixels=True)
    expected = np.maximum(reference, -1024)
    pad = header.get("PixelPaddingValue")
    if pad is not None:
        expected = expected.copy()
        expected[reference == int(pad) + int(header.RescaleIntercept)] = -1024
    assert np.array_equal(default.volume.array, expected)
    assert default.job_id == outcome.job_id


def test_two_kernels_of_one_study_are_two_jobs(tcia_dirs: list[Path]) -> None:
    study = tcia_dirs[0].parent
    report = ingest_paths(study)
    converted = only(report.outcomes, "converted")
    assert len(converted) == 2
    assert len({o.job_id for o in converted}) == 2
    assert {o.result.series_json["convolution_kernel"] for o in converted if o.result} == {"L", "B"}


def test_series_json_is_deterministic_and_free_of_patient_identifiers(a0002_dir: Path) -> None:
    files = dicom_files(a0002_dir)
    first = ingest_paths(a0002_dir).outcomes[0].result
    second = ingest_paths(a0002_dir).outcomes[0].result
    assert first is not None and second is not None
    text = json.dumps(first.series_json, sort_keys=True)
    assert text == json.dumps(second.series_json, sort_keys=True)
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate"):
        value = str(ds.get(keyword, "")).strip()
        if len(value) > 3:
            assert value not in text
    sidecar = first.series_json
    assert sidecar["job_id"] == first.job_id
    assert sidecar["instance_count"] == 30
    assert sidecar["volume"]["shape_zyx"] == [30, 512, 512]
    assert sidecar["qa"]["spacing"]["uniform"] is True


def _ge_files(samples_dir: Path) -> list[Path]:
    return sorted((samples_dir / "dcm-qa-ct/In/GE").glob("*.dcm"))


def test_tilted_variable_spacing_head_is_resampled_with_true_geometry(samples_dir: Path) -> None:
    files = _ge_files(samples_dir)
    result = convert_series([(p.name, p) for p in files])
    volume = result.volume
    matrix = volume.direction_matrix()
    assert np.allclose(matrix.T @ matrix, np.eye(3), atol=1e-9)  # orthogonal grid
    codes = {d["code"]: d["action"] for d in result.series_json["qa"]["decisions"]}
    assert codes == {"GANTRY_TILT": "resampled", "VARIABLE_SLICE_SPACING": "resampled"}
    assert result.series_json["qa"]["gantry_tilt_corrected_deg"] == pytest.approx(18.5, abs=0.05)
    naive = sitk_series(samples_dir / "dcm-qa-ct/In/GE")
    naive_hu = np.maximum(sitk.GetArrayFromImage(naive), -1024).astype(np.float32)
    ours_hu = volume.array.astype(np.float32)
    rng = np.random.default_rng(3)
    ours_err, naive_err = [], []
    for index, path in enumerate(files):
        ds = pydicom.dcmread(path)
        hu = np.maximum(ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept), -1024)
        position = np.array(ds.ImagePositionPatient, dtype=float)
        row, col = (
            np.array(ds.ImageOrientationPatient[:3]),
            np.array(ds.ImageOrientationPatient[3:]),
        )
        dy, dx = (float(v) for v in ds.PixelSpacing)
        if index < 14:  # the uniform part: the slice's first voxel sits exactly on a grid plane
            corner = volume.physical_to_index(position)
            assert corner[2] == pytest.approx(index, abs=1e-3)
            assert volume.index_to_physical(corner) == pytest.approx(position, abs=1e-6)
        ii, jj = rng.integers(120, 390, 150), rng.integers(120, 390, 150)
        points = position + np.outer(ii * dx, row) + np.outer(jj * dy, col)
        ours = volume.physical_to_index(points)
        ours_err.append(np.abs(map_coordinates(ours_hu, ours[:, ::-1].T, order=1) - hu[jj, ii]))
        theirs = np.array([naive.TransformPhysicalPointToContinuousIndex(tuple(p)) for p in points])
        naive_err.append(np.abs(map_coordinates(naive_hu, theirs[:, ::-1].T, order=1) - hu[jj, ii]))
    ours_median = float(np.median(np.concatenate(ours_err)))
    naive_median = float(np.median(np.concatenate(naive_err)))
    assert ours_median < 5.0  # same patient-space point, same tissue (only interpolation)
    assert naive_median > 5 * ours_median  # SimpleITK's averaged geometry misplaces voxels


def test_tilt_and_variable_spacing_can_be_rejected(samples_dir: Path) -> None:
    instances = [(p.name, p) for p in _ge_files(samples_dir)]
    with pytest.raises(PermanentError) as err:
        convert_series(instances, DEFAULT_CONFIG.with_changes(assembly={"gantry_tilt": "reject"}))
    assert err.value.code == "GANTRY_TILT"
    assert "18.5" in err.value.reason
    strict = DEFAULT_CONFIG.with_changes(assembly={"variable_spacing": "reject"})
    with pytest.raises(PermanentError) as err:
        convert_series(instances, strict)
    assert err.value.code == "VARIABLE_SLICE_SPACING"


def test_philips_localizers_and_secondary_captures_are_skipped(samples_dir: Path) -> None:
    report = ingest_paths(samples_dir / "dcm-qa-ct/In/Philips")
    codes = sorted(o.code or "" for o in report.outcomes)
    assert codes == ["LOCALIZER", "LOCALIZER", "SECONDARY_CAPTURE", "SECONDARY_CAPTURE"]
    assert all(o.status == "skipped" and o.reason for o in report.outcomes)
    assert {u.code for u in report.unusable} == {"DICOMDIR"}


def test_duplicate_positions_are_rejected_with_details(samples_dir: Path) -> None:
    report = ingest_paths(samples_dir / "dicom-numpy-dupe-positions")
    (outcome,) = report.outcomes
    assert outcome.status == "rejected"
    assert outcome.code in ("DUPLICATE_POSITION", "SLICE_GAP")
    assert outcome.code == "DUPLICATE_POSITION"
    assert len(outcome.inputs) == 2 and all(uid.startswith("1.2.826.") for uid in outcome.inputs)
    assert "-90.000" in outcome.reason


def test_empty_uid_jpeg2000_series_converts_with_derived_identity(samples_dir: Path) -> None:
    folder = samples_dir / "totalsegmentator-testdata/example_ct_dicom"
    (outcome,) = ingest_paths(folder).outcomes
    assert outcome.status == "converted", outcome.reason
    assert outcome.derived_identity and outcome.series_key.startswith("derived-")
    result = outcome.result
    assert result is not None and result.series_json["derived_identity"] is True
    files = sorted(
        folder.iterdir(), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2])
    )
    expected = np.stack([pydicom.dcmread(p).pixel_array.astype(np.int16) - 1024 for p in files])
    assert np.array_equal(result.volume.array, np.maximum(expected, -1024))
    assert result.volume.spacing == pytest.approx((0.9765625, 0.9765625, 2.0))
    assert result.volume.origin == pytest.approx((-249.51171875, -437.51171875, -804.5))


def test_enhanced_multiframe_ct(samples_dir: Path) -> None:
    path = samples_dir / "pydicom-data-ct/eCT_Supplemental.dcm"
    with pytest.raises(PermanentError) as err:
        convert_series([("ect", path)])
    assert err.value.code == "DERIVED_IMAGE"  # a perfusion map, not an original image
    lenient = DEFAULT_CONFIG.with_changes(selection={"require_original": False})
    with pytest.raises(PermanentError) as err:
        convert_series([("ect", path)], lenient)
    assert err.value.code == "TOO_FEW_SLICES"
    two = lenient.with_changes(assembly={"min_slices": 2})
    result = convert_series([("ect", path)], two)
    volume = result.volume
    frames = pydicom.dcmread(path).pixel_array.astype(np.int16) - 1024
    # The normal of IOP (-1,0,0 / 0,1,0) points to -z: frame 2 (z=-149) comes first.
    assert np.array_equal(volume.array, np.maximum(frames[::-1], -1024))
    assert volume.direction == pytest.approx((-1, 0, 0, 0, 1, 0, 0, 0, -1))
    assert volume.spacing == pytest.approx((0.388672, 0.388672, 10.0))
    assert volume.index_to_physical([0, 0, 1]) == pytest.approx((99.5, -301.5, -159.0))


def test_two_slices_are_too_few(samples_dir: Path) -> None:
    (outcome,) = ingest_paths(samples_dir / "lungmask-testdata").outcomes
    assert outcome.status == "rejected"
    assert outcome.code == "TOO_FEW_SLICES"
