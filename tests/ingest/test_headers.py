"""Header parsing: facts without pixels, prefix sufficiency, junk handling, JSON, zips."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from pathlib import Path

import pydicom
import pytest

from covidct_core.errors import PermanentError
from covidct_ingest import fastparse, headers
from covidct_ingest.archive import iter_zip_members
from covidct_ingest.headers import (
    header_from_json,
    header_to_json,
    instance_key,
    parse_header,
    parse_header_prefix,
    read_header_file,
)

PATIENT_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate")


def sample_objects(samples_dir: Path) -> list[Path]:
    wanted = (
        "tcia-lung-pet-ct-dx/Lung_Dx-A0002",
        "dcm-qa-ct",
        "pydicom-data-ct",
        "totalsegmentator-testdata/example_ct_dicom",
        "dicom-numpy-dupe-positions",
        "lungmask-testdata",
    )
    files = []
    for sub in wanted:
        files += sorted(p for p in (samples_dir / sub).rglob("*") if p.is_file())
    return files


def test_header_facts_of_a_real_slice(a0002_files: list[Path]) -> None:
    data = a0002_files[0].read_bytes()
    ds = pydicom.dcmread(io.BytesIO(data))
    header = parse_header(data)
    assert header.sop_instance_uid == ds.SOPInstanceUID
    assert header.series_instance_uid == ds.SeriesInstanceUID
    assert header.modality == "CT"
    assert header.image_type[:2] == ("ORIGINAL", "PRIMARY")
    assert header.image_position == tuple(float(v) for v in ds.ImagePositionPatient)
    assert header.pixel_spacing == tuple(float(v) for v in ds.PixelSpacing)
    assert (header.rows, header.columns) == (512, 512)
    assert header.rescale_intercept == float(ds.RescaleIntercept)
    assert header.convolution_kernel == "B70f"
    assert header.content_sha256 is not None and len(header.content_sha256) == 64
    assert header.has_pixel_data and header.pixel_data_length == 512 * 512 * 2
    offset = header.pixel_data_offset
    assert offset is not None and data[offset : offset + 8] == ds.PixelData[:8]
    assert instance_key(header) == ds.SOPInstanceUID


def test_no_patient_identifiers_in_the_header_json(a0002_files: list[Path]) -> None:
    data = a0002_files[0].read_bytes()
    ds = pydicom.dcmread(io.BytesIO(data))
    text = header_to_json(parse_header(data))
    for keyword in PATIENT_KEYWORDS:
        assert keyword.lower() not in text.lower()
        value = str(ds.get(keyword, "")).strip()
        if len(value) > 3:
            assert value not in text


def test_fast_walker_and_pydicom_agree_on_every_sample(
    samples_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = sample_objects(samples_dir)
    fast = {}
    for path in files:
        try:
            fast[path] = parse_header(path.read_bytes())
        except PermanentError as e:
            fast[path] = e.code
    monkeypatch.setattr(headers, "walk_header", lambda *args: None)
    for path in files:
        try:
            slow: object = parse_header(path.read_bytes())
        except PermanentError as e:
            slow = e.code
        assert slow == fast[path], path
    assert sum(isinstance(v, headers.InstanceHeader) for v in fast.values()) > 60


def test_walker_handles_most_real_slices(a0002_files: list[Path], lidc_dir: Path) -> None:
    for path in [*a0002_files[:3], *sorted(lidc_dir.glob("*.dcm"))[:3]]:
        data = path.read_bytes()
        raw = fastparse.walk_header(data, len(data), headers.WANTED_TAGS)
        assert isinstance(raw, fastparse.RawHeader)
        assert data[raw.pixel_offset : raw.pixel_offset + 4] == b"\xe0\x7f\x10\x00"


def test_prefix_is_enough_for_normal_slices(samples_dir: Path, a0002_files: list[Path]) -> None:
    data = a0002_files[3].read_bytes()
    full = parse_header(data)
    prefix = parse_header_prefix(data[: headers.PREFIX_SIZE], len(data))
    assert prefix == dataclasses.replace(full, content_sha256=None)
    assert parse_header_prefix(data[:400], len(data)) is None  # ends inside the header
    assert parse_header_prefix(data, len(data)) == dataclasses.replace(full, content_sha256=None)
    enhanced = (samples_dir / "pydicom-data-ct/eCT_Supplemental.dcm").read_bytes()
    assert parse_header_prefix(enhanced[:64], len(enhanced)) is None


def test_prefix_without_sop_uid_asks_for_the_whole_object(samples_dir: Path) -> None:
    path = next((samples_dir / "totalsegmentator-testdata/example_ct_dicom").iterdir())
    data = path.read_bytes()
    assert parse_header_prefix(data[: headers.PREFIX_SIZE], len(data)) is None
    header = parse_header(data)
    assert header.sop_instance_uid == "" and header.series_instance_uid == ""
    assert instance_key(header) == "sha256-" + str(header.content_sha256)
    assert read_header_file(path) == header


def test_read_header_file_matches_parse_header(a0002_files: list[Path]) -> None:
    path = a0002_files[5]
    from_file = read_header_file(path)
    assert from_file == dataclasses.replace(parse_header(path.read_bytes()), content_sha256=None)
    assert read_header_file(path, compute_sha256=True) == parse_header(path.read_bytes())


@pytest.mark.parametrize(
    ("blob", "code"),
    [
        (b"", "NOT_DICOM"),
        (b"hello, this is a text file\n" * 20, "NOT_DICOM"),
        (bytes(range(256)) * 8, "NOT_DICOM"),
        (b"\x00" * 128 + b"DICM" + b"\xff" * 40, "CORRUPT_FILE"),
    ],
)
def test_junk_raises_a_permanent_error(blob: bytes, code: str) -> None:
    with pytest.raises(PermanentError) as err:
        parse_header(blob)
    assert err.value.code == code


@pytest.mark.parametrize("cut", [200, 600, 3000, 100_000, -1])
def test_truncated_slices_are_corrupt(a0002_files: list[Path], cut: int, tmp_path: Path) -> None:
    data = a0002_files[0].read_bytes()[:cut]
    with pytest.raises(PermanentError) as err:
        parse_header(data)
    assert err.value.code == "CORRUPT_FILE"
    path = tmp_path / "cut"
    path.write_bytes(data)
    with pytest.raises(PermanentError) as err:
        read_header_file(path)
    assert err.value.code == "CORRUPT_FILE"


def test_truncated_compressed_slice_is_corrupt(samples_dir: Path) -> None:
    path = next((samples_dir / "totalsegmentator-testdata/example_ct_dicom").iterdir())
    data = path.read_bytes()
    parse_header(data)
    with pytest.raises(PermanentError) as err:
        parse_header(data[: len(data) // 2])
    assert err.value.code == "CORRUPT_FILE"


def test_dicomdir_is_recognised(samples_dir: Path) -> None:
    with pytest.raises(PermanentError) as err:
        parse_header((samples_dir / "dcm-qa-ct/In/Philips/DICOMDIR").read_bytes())
    assert err.value.code == "DICOMDIR"


def test_enhanced_ct_frames(samples_dir: Path) -> None:
    header = parse_header((samples_dir / "pydicom-data-ct/eCT_Supplemental.dcm").read_bytes())
    assert header.number_of_frames == 2
    assert header.frame_positions == ((99.5, -301.5, -159.0), (99.5, -301.5, -149.0))
    assert header.image_orientation == (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    assert header.pixel_spacing == (0.388672, 0.388672)
    assert header.rescale_intercept == -1024.0


def test_signed_padding_value_written_as_us(samples_dir: Path) -> None:
    path = next((samples_dir / "dicom-numpy-dupe-positions").glob("*.dcm"))
    header = parse_header(path.read_bytes())
    assert header.pixel_representation == 1
    assert header.pixel_padding_value == 63536 - 65536


def test_json_round_trip(samples_dir: Path, a0002_files: list[Path]) -> None:
    for data in (
        a0002_files[0].read_bytes(),
        (samples_dir / "pydicom-data-ct/eCT_Supplemental.dcm").read_bytes(),
    ):
        header = parse_header(data)
        text = header_to_json(header)
        assert json.loads(text)["format"] == 1
        assert header_from_json(text) == header
    with pytest.raises(PermanentError):
        header_from_json('{"unknown": 1}')
    with pytest.raises(PermanentError):
        header_from_json("[1, 2]")


def test_zip_members_skip_folders_and_dicomdir(a0002_files: list[Path], tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("study/", b"")
        archive.writestr("study/DICOMDIR", b"dir")
        archive.writestr("study/a/IM1", a0002_files[0].read_bytes())
        archive.writestr("__MACOSX/study/._IM1", b"fork")
        archive.writestr("study/b/notes.txt", b"text")
    members = list(iter_zip_members(buffer.getvalue()))
    assert [name for name, _ in members] == ["study/a/IM1", "study/b/notes.txt"]
    assert members[0][1] == a0002_files[0].read_bytes()
    path = tmp_path / "x.zip"
    path.write_bytes(buffer.getvalue())
    assert [name for name, _ in iter_zip_members(path)] == ["study/a/IM1", "study/b/notes.txt"]
    with pytest.raises(PermanentError) as err:
        list(iter_zip_members(buffer.getvalue()[:100]))
    assert err.value.code == "CORRUPT_FILE"
    with pytest.raises(PermanentError) as err:
        list(iter_zip_members(buffer.getvalue(), max_total_bytes=10))
    assert err.value.code == "ARCHIVE_TOO_LARGE"
