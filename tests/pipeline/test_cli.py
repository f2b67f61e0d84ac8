"""The README's main command: `covidct phantom` and `covidct run`, as a user runs them."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from covidct_classify.results import RESULT_COLUMNS
from covidct_core.volume_io import read_mha

BIN = Path(sys.executable).parent
COLUMNS = list(RESULT_COLUMNS)  # the spelled-out order is asserted in tests/classify


def covidct(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "covidct"), *args], capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_phantom_then_run_writes_every_output(tmp_path: Path) -> None:
    made = covidct("phantom", "--out", str(tmp_path / "dicom"), "--lesions")
    assert made.returncode == 0, made.stderr
    assert len(list((tmp_path / "dicom").glob("*.dcm"))) > 50
    run = covidct("run", str(tmp_path / "dicom"), "--out", str(tmp_path / "out"), "--device", "cpu")
    assert run.returncode == 0, run.stderr
    assert "[segment]" in run.stderr and "[classify]" in run.stderr
    rows = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    assert len(rows) == 1
    assert list(rows[0]) == COLUMNS
    row = rows[0]
    assert abs(float(row["probability_covid19"]) + float(row["probability_non_covid19"]) - 1) < 1e-5
    assert float(row["percent_opacity"]) > 5.0  # the phantom has 20 % synthetic findings
    series = tmp_path / "out" / row["series_instance_uid"]
    for name in ("image.mha", "lung_mask.mha", "result.csv", "result.json", "overview.png"):
        assert (series / name).is_file(), name
    image, mask = read_mha(series / "image.mha"), read_mha(series / "lung_mask.mha")
    assert image.same_geometry(mask, tol=1e-6)
    assert set(mask.array.ravel().tolist()) <= {0, 1}
    document = json.loads((series / "result.json").read_text())
    assert document["research_use_disclaimer"].startswith("RESEARCH USE ONLY")
    assert len(document["provenance"]["volume_sha256"]) == 64


def test_run_reports_rejected_series_and_exits_non_zero(tmp_path: Path, samples_dir: Path) -> None:
    run = covidct("run", str(samples_dir / "lungmask-testdata"), "--out", str(tmp_path / "out"))
    assert run.returncode == 1
    assert "TOO_FEW_SLICES" in run.stderr
    errors = list((tmp_path / "out").glob("*/error.json"))
    assert len(errors) == 1
    assert json.loads(errors[0].read_text())["code"] == "TOO_FEW_SLICES"
    assert not (tmp_path / "out" / "results.csv").exists()


def test_run_on_nothing_usable_says_so(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("not DICOM")
    run = covidct("run", str(tmp_path / "in"), "--out", str(tmp_path / "out"))
    assert run.returncode == 1
    assert "no eligible axial CT series" in run.stderr
