"""Variants generated at test time from the real 30-slice A0002 series (never stored)."""

from __future__ import annotations

import io
import random
import secrets
import zipfile
from pathlib import Path

import gdcm
import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, RLELossless, generate_uid

from covidct_core.errors import PermanentError
from covidct_ingest.bag import ingest_bag, ingest_paths
from covidct_ingest.config import DEFAULT_CONFIG
from covidct_ingest.convert import ConversionResult, convert_series

Blob = tuple[str, bytes]
ONE_SLICE = DEFAULT_CONFIG.with_changes(assembly={"min_slices": 1})


@pytest.fixture(scope="session")
def original(a0002_dir: Path) -> ConversionResult:
    return convert_series([(p.name, p) for p in sorted(a0002_dir.glob("*.dcm"))])


@pytest.fixture(scope="session")
def blobs(a0002_files: list[Path]) -> list[Blob]:
    return [(p.name, p.read_bytes()) for p in a0002_files]


def pydicom_transcode(blobs: list[Blob], syntax: str) -> list[Blob]:
    out = []
    for name, data in blobs:
        ds = pydicom.dcmread(io.BytesIO(data))
        plugin = "pylibjpeg" if syntax == JPEG2000Lossless else ""
        ds.compress(syntax, encoding_plugin=plugin, generate_instance_uid=False)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out.append((name, buffer.getvalue()))
    return out


def gdcm_transcode(files: list[Path], syntax: str, folder: Path) -> list[Blob]:
    out = []
    for path in files:
        reader = gdcm.ImageReader()
        reader.SetFileName(str(path))
        assert reader.Read()
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, syntax)))
        change.SetInput(reader.GetImage())
        assert change.Change()
        target = folder / f"{syntax}-{path.name}"
        writer = gdcm.ImageWriter()
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        writer.SetFileName(str(target))
        assert writer.Write()
        out.append((path.name, target.read_bytes()))
    return out


@pytest.mark.parametrize(
    ("tool", "syntax", "uid"),
    [
        ("pydicom", RLELossless, "1.2.840.10008.1.2.5"),
        ("pydicom", JPEG2000Lossless, "1.2.840.10008.1.2.4.90"),
        ("gdcm", "JPEGLosslessProcess14_1", "1.2.840.10008.1.2.4.70"),
        ("gdcm", "JPEGLSLossless", "1.2.840.10008.1.2.4.80"),
    ],
)
def test_transcoded_series_give_the_same_volume_and_job(
    tool: str,
    syntax: str,
    uid: str,
    blobs: list[Blob],
    a0002_files: list[Path],
    original: ConversionResult,
    tmp_path: Path,
) -> None:
    if tool == "pydicom":
        variant = pydicom_transcode(blobs, syntax)
    else:
        variant = gdcm_transcode(a0002_files, syntax, tmp_path)
    random.Random(5).shuffle(variant)
    result = convert_series(variant)
    assert result.series_json["transfer_syntaxes"] == [uid]
    assert np.array_equal(result.volume.array, original.volume.array)
    assert result.volume.same_geometry(original.volume, tol=1e-9)
    assert result.job_id == original.job_id  # same instances, other encoding


def test_a_removed_slice_is_a_gap(blobs: list[Blob]) -> None:
    removed = pydicom.dcmread(io.BytesIO(blobs[12][1]), stop_before_pixels=True)
    with pytest.raises(PermanentError) as err:
        convert_series(blobs[:12] + blobs[13:])
    assert err.value.code == "SLICE_GAP"
    assert f"{float(removed.ImagePositionPatient[2]):.2f}" in err.value.reason


def test_an_exact_copy_under_another_name_is_deduplicated(
    blobs: list[Blob], original: ConversionResult
) -> None:
    copy = ("copy-of-" + blobs[7][0], blobs[7][1])
    result = convert_series([*blobs, copy])
    assert result.job_id == original.job_id
    assert np.array_equal(result.volume.array, original.volume.array)
    uid = pydicom.dcmread(io.BytesIO(blobs[7][1]), stop_before_pixels=True).SOPInstanceUID
    assert result.series_json["qa"]["deduplicated"] == [uid]


def test_same_position_other_content_is_rejected(blobs: list[Blob]) -> None:
    ds = pydicom.dcmread(io.BytesIO(blobs[4][1]))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    pixels = ds.pixel_array.copy()
    pixels[100:120, 100:120] = 2000
    ds.PixelData = pixels.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    with pytest.raises(PermanentError) as err:
        convert_series([*blobs, ("other", buffer.getvalue())])
    assert err.value.code == "DUPLICATE_POSITION"
    assert str(ds.SOPInstanceUID) in err.value.inputs


def test_an_extra_slice_makes_a_new_job(blobs: list[Blob], original: ConversionResult) -> None:
    result = convert_series(blobs[:-1])
    assert result.job_id != original.job_id
    assert result.volume.array.shape[0] == 29


def test_mixed_series_nested_zips_junk_and_truncated_files(
    a0002_dir: Path, tcia_dirs: list[Path], tmp_path: Path, original: ConversionResult
) -> None:
    other_dir = next(d for d in tcia_dirs if "A0002" in str(d) and d != a0002_dir)
    other = convert_series([(p.name, p) for p in sorted(other_dir.glob("*.dcm"))])
    rng = random.Random(11)
    bag: list[tuple[str, bytes | Path]] = []
    files = sorted(a0002_dir.glob("*.dcm"))
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for path in files[:10]:  # a third of the series only inside a nested zip
            zf.writestr(f"deep/{secrets.token_hex(3)}/{secrets.token_hex(4)}", path.read_bytes())
        zf.writestr("DICOMDIR", b"not parsed")
    bag.append(("uploads/a/b/c/archive.zip", archive.getvalue()))
    bag += [(f"uploads/{secrets.token_hex(2)}/{secrets.token_hex(5)}", p) for p in files[10:]]
    bag += [(f"uploads/x/{secrets.token_hex(5)}", p) for p in sorted(other_dir.glob("*.dcm"))]
    truncated = files[3].read_bytes()
    bag += [
        ("junk/empty", b""),
        ("junk/notes.txt", b"patient list, please ignore\n"),
        ("junk/random.bin", bytes(rng.getrandbits(8) for _ in range(5000))),
        ("junk/truncated-pixels", truncated[: len(truncated) // 2]),
        ("junk/truncated-header", truncated[:700]),
        ("junk/broken.zip", archive.getvalue()[:300]),
    ]
    rng.shuffle(bag)
    report = ingest_bag(bag)
    converted = {o.job_id: o for o in report.outcomes if o.status == "converted"}
    assert set(converted) == {original.job_id, other.job_id}
    result = converted[original.job_id].result
    assert result is not None
    assert np.array_equal(result.volume.array, original.volume.array)
    codes = {u.key: u.code for u in report.unusable}
    assert codes == {
        "junk/empty": "NOT_DICOM",
        "junk/notes.txt": "NOT_DICOM",
        "junk/random.bin": "NOT_DICOM",
        "junk/truncated-pixels": "CORRUPT_FILE",
        "junk/truncated-header": "CORRUPT_FILE",
        "junk/broken.zip": "CORRUPT_FILE",
    }
    # The same bag as files on disk, zip included.
    root = tmp_path / "bag"
    for key, source in bag:
        target = root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source if isinstance(source, bytes) else source.read_bytes())
    on_disk = ingest_paths(root)
    assert {o.job_id for o in on_disk.outcomes if o.status == "converted"} == set(converted)
    assert {u.code for u in on_disk.unusable} == set(codes.values())


def test_unsupported_transfer_syntax(blobs: list[Blob]) -> None:
    variant = pydicom_transcode(blobs[:1], RLELossless)[0][1]
    ds = pydicom.dcmread(io.BytesIO(variant))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 video
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    with pytest.raises(PermanentError) as err:
        convert_series([("mpeg", buffer.getvalue())], ONE_SLICE)
    assert err.value.code == "UNSUPPORTED_TRANSFER_SYNTAX"
    assert err.value.inputs[0] == "mpeg"


def test_damaged_compressed_stream_is_corrupt(blobs: list[Blob]) -> None:
    variant = bytearray(pydicom_transcode(blobs[:1], JPEG2000Lossless)[0][1])
    start = variant.find(b"\xff\x4f\xff\x51")  # JPEG 2000 SOC + SIZ markers
    assert start > 0
    variant[start : start + 64] = bytes(64)
    with pytest.raises(PermanentError) as err:
        convert_series([("j2k", bytes(variant))], ONE_SLICE)
    assert err.value.code == "CORRUPT_FILE"
    assert err.value.inputs[0] == "j2k"
