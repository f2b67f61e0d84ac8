from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from covidct_classify.results import (
    RESULT_COLUMNS,
    Provenance,
    SeriesResult,
    merge_flags,
    read_result_rows,
    result_csv_bytes,
    result_json_bytes,
    split_probabilities,
    upsert_results_csv,
)
from covidct_core import RESEARCH_USE_DISCLAIMER


def make_result(series: str = "1.2.3.4", probability: float = 0.8765432, **changes) -> SeriesResult:  # type: ignore[no-untyped-def]
    covid, non_covid = split_probabilities(probability)
    fields = dict(
        series_instance_uid=series,
        study_instance_uid="1.2.3",
        probability_covid19=covid,
        probability_non_covid19=non_covid,
        lung_volume_ml=4321.04,
        percent_opacity=12.3456,
        percent_high_opacity=1.2,
        qa_flags=("SLICE_GAP", "LUNG_VOLUME_OUT_OF_RANGE"),
        segmentation_model="lung_seg@1.0.0",
        classification_model="covid_cls@1.0.0",
        pipeline_version="0.1.0",
        processed_at="2026-01-02T03:04:05.678Z",
    )
    fields.update(changes)
    return SeriesResult(**fields)


def make_provenance() -> Provenance:
    return Provenance(
        job_id="ab" * 16,
        instance_set_sha256="cd" * 32,
        correlation_id="corr",
        volume_sha256="01" * 32,
        mask_sha256="02" * 32,
        segmentation_model={"name": "lung_seg", "version": "1.0.0", "sha256": "03" * 32},
        classification_model={"name": "covid_cls", "version": "1.0.0", "sha256": "04" * 32},
        timings={"ingest_seconds": 1.5, "classify_seconds": 2.0},
        ingest_qa={"qa_flags": ["SLICE_GAP"], "slices": 64},
        first_seen_at="2026-01-02T03:00:00.000Z",
        model_vs_classical_dice=0.97,
        extra_metrics={"mean_lung_hu": -820.5},
    )


def test_columns_in_contract_order() -> None:
    assert RESULT_COLUMNS == (
        "series_instance_uid",
        "study_instance_uid",
        "probability_covid19",
        "probability_non_covid19",
        "lung_volume_ml",
        "percent_opacity",
        "percent_high_opacity",
        "qa_flags",
        "segmentation_model",
        "classification_model",
        "pipeline_version",
        "processed_at",
    )
    text = result_csv_bytes([make_result()]).decode()
    header, row, end = text.split("\n")
    assert header == ",".join(RESULT_COLUMNS)
    assert end == ""
    assert row.startswith("1.2.3.4,1.2.3,0.876543,0.123457,4321.0,12.35,1.20,")
    assert "SLICE_GAP;LUNG_VOLUME_OUT_OF_RANGE" in row


@pytest.mark.parametrize("probability", [0.0, 1e-9, 0.1234565, 0.5, 0.9999996, 1.0])
def test_probabilities_sum_to_one_as_written(probability: float) -> None:
    rows = read_result_rows(result_csv_bytes([make_result(probability=probability)]))
    total = Decimal(rows[0]["probability_covid19"]) + Decimal(rows[0]["probability_non_covid19"])
    assert total == Decimal("1")


def test_probabilities_must_sum_to_one() -> None:
    with pytest.raises(ValueError, match="sum"):
        make_result(probability_non_covid19=0.5)
    with pytest.raises(ValueError):
        split_probabilities(1.5)


def test_flags_merge_and_separator() -> None:
    assert merge_flags(["A", "B"], ["B", "", "C"], ["A"]) == ("A", "B", "C")
    with pytest.raises(ValueError):
        make_result(qa_flags=("BAD;FLAG",))


def test_result_json_has_row_and_provenance() -> None:
    document = json.loads(result_json_bytes(make_result(), make_provenance()))
    for column in RESULT_COLUMNS:
        assert column in document
    assert document["probability_covid19"] + document["probability_non_covid19"] == 1.0
    assert document["qa_flags"] == ["SLICE_GAP", "LUNG_VOLUME_OUT_OF_RANGE"]
    provenance = document["provenance"]
    assert provenance["job_id"] == "ab" * 16
    assert provenance["instance_set_sha256"] == "cd" * 32
    assert provenance["volume_sha256"] == "01" * 32
    assert provenance["mask_sha256"] == "02" * 32
    assert provenance["classification_model"]["sha256"] == "04" * 32
    assert provenance["segmentation_model"]["sha256"] == "03" * 32
    assert provenance["timings"]["classify_seconds"] == 2.0
    assert provenance["ingest_qa"]["slices"] == 64
    assert document["research_use_disclaimer"] == RESEARCH_USE_DISCLAIMER


def test_collecting_csv_upserts(tmp_path: Path) -> None:
    target = tmp_path / "out" / "results.csv"
    assert upsert_results_csv(target, result_csv_bytes([make_result("1.1")])) == 1
    assert upsert_results_csv(target, result_csv_bytes([make_result("1.2")])) == 2
    again = make_result("1.1", probability=0.25)
    assert upsert_results_csv(target, result_csv_bytes([again])) == 2
    rows = read_result_rows(target.read_bytes())
    assert [r["series_instance_uid"] for r in rows] == ["1.1", "1.2"]
    assert rows[0]["probability_covid19"] == "0.250000"
    other_model = make_result("1.1", classification_model="user_cls@2.0")
    assert upsert_results_csv(target, result_csv_bytes([other_model])) == 3


def test_wrong_header_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="header"):
        read_result_rows(b"a,b\n1,2\n")
