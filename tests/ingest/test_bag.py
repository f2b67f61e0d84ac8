"""Bag scanning and streaming outcomes; the benchmark's synthetic series stays valid."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from covidct_ingest import (
    collect_files,
    iter_series_outcomes,
    plan_series,
    scan_bag,
)
from covidct_ingest.bag import ingest_paths
from covidct_ingest.config import DEFAULT_CONFIG
from tests.ingest.conftest import sitk_int16, sitk_series

REPO = Path(__file__).resolve().parents[2]


def test_collect_files_walks_nested_folders(tmp_path: Path) -> None:
    (tmp_path / "b" / "c").mkdir(parents=True)
    (tmp_path / "b" / "c" / "x").write_bytes(b"1")
    (tmp_path / "a").write_bytes(b"2")
    assert [key for key, _ in collect_files(tmp_path)] == ["a", "b/c/x"]
    assert collect_files(tmp_path / "a") == [("a", tmp_path / "a")]


def test_scan_then_stream_one_series_at_a_time(samples_dir: Path) -> None:
    scan = scan_bag(collect_files(samples_dir / "dcm-qa-ct"))
    skipped = [p for p in scan.plans if p.skip is not None]
    assert len(scan.plans) == 5 and len(skipped) == 4
    assert {u.code for u in scan.unusable} == {"DICOMDIR", "NOT_DICOM"}
    replanned = plan_series(scan.headers, DEFAULT_CONFIG)
    assert [p.group.job_id for p in replanned] == [p.group.job_id for p in scan.plans]
    outcomes = iter_series_outcomes(scan)
    statuses = sorted(o.status for o in outcomes)
    assert statuses == ["converted", "skipped", "skipped", "skipped", "skipped"]


def test_bench_series_generator_makes_a_valid_series(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_ingest", REPO / "bench" / "ingest.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.write_series(tmp_path, 20, size=64)
    (outcome,) = ingest_paths(tmp_path).outcomes
    assert outcome.status == "converted" and outcome.result is not None
    assert outcome.result.volume.array.shape == (20, 64, 64)
    assert np.array_equal(outcome.result.volume.array, sitk_int16(sitk_series(tmp_path)))
    image = sitk_series(tmp_path)
    assert np.allclose(outcome.result.volume.origin, image.GetOrigin())
    assert isinstance(image, sitk.Image)
