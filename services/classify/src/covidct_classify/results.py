"""Per-series results: ``result.csv`` (one row), ``result.json`` (row + provenance) and the
collecting ``results.csv`` of an embedded run. Columns are documented in docs/results.md.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from covidct_core import RESEARCH_USE_DISCLAIMER
from covidct_core.storage import replace_file

RESULT_COLUMNS = (
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
PROBABILITY_DECIMALS = 6
QA_FLAG_SEPARATOR = ";"


def split_probabilities(probability_covid19: float) -> tuple[float, float]:
    """Round P(COVID-19) to 6 decimals and return it with its complement (sum exactly 1)."""
    if not 0.0 <= probability_covid19 <= 1.0:
        raise ValueError(f"probability {probability_covid19} outside [0, 1]")
    covid = round(probability_covid19, PROBABILITY_DECIMALS)
    return covid, round(1.0 - covid, PROBABILITY_DECIMALS)


def merge_flags(*groups: Sequence[str]) -> tuple[str, ...]:
    """Union of QA flags, first-seen order, no duplicates or empty strings."""
    seen: dict[str, None] = {}
    for group in groups:
        for flag in group:
            if flag:
                seen.setdefault(flag, None)
    return tuple(seen)


@dataclass(frozen=True)
class SeriesResult:
    """One row of ``result.csv``. Models are ``name@version``."""

    series_instance_uid: str
    study_instance_uid: str
    probability_covid19: float
    probability_non_covid19: float
    lung_volume_ml: float
    percent_opacity: float
    percent_high_opacity: float
    qa_flags: tuple[str, ...]
    segmentation_model: str
    classification_model: str
    pipeline_version: str
    processed_at: str

    def __post_init__(self) -> None:
        total = self.probability_covid19 + self.probability_non_covid19
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"probabilities sum to {total}, not 1")
        for flag in self.qa_flags:
            if QA_FLAG_SEPARATOR in flag:
                raise ValueError(f"QA flag {flag!r} contains {QA_FLAG_SEPARATOR!r}")

    def csv_row(self) -> list[str]:
        """The row as text, in :data:`RESULT_COLUMNS` order."""
        decimals = PROBABILITY_DECIMALS
        return [
            self.series_instance_uid,
            self.study_instance_uid,
            f"{self.probability_covid19:.{decimals}f}",
            f"{self.probability_non_covid19:.{decimals}f}",
            f"{self.lung_volume_ml:.1f}",
            f"{self.percent_opacity:.2f}",
            f"{self.percent_high_opacity:.2f}",
            QA_FLAG_SEPARATOR.join(self.qa_flags),
            self.segmentation_model,
            self.classification_model,
            self.pipeline_version,
            self.processed_at,
        ]

    def to_json_fields(self) -> dict[str, Any]:
        """The same values as typed JSON (numbers as numbers, flags as a list)."""
        return {
            "series_instance_uid": self.series_instance_uid,
            "study_instance_uid": self.study_instance_uid,
            "probability_covid19": self.probability_covid19,
            "probability_non_covid19": self.probability_non_covid19,
            "lung_volume_ml": round(self.lung_volume_ml, 1),
            "percent_opacity": round(self.percent_opacity, 2),
            "percent_high_opacity": round(self.percent_high_opacity, 2),
            "qa_flags": list(self.qa_flags),
            "segmentation_model": self.segmentation_model,
            "classification_model": self.classification_model,
            "pipeline_version": self.pipeline_version,
            "processed_at": self.processed_at,
        }


@dataclass(frozen=True)
class Provenance:
    """Where a result came from: job, inputs, models, timings and ingest QA."""

    job_id: str
    instance_set_sha256: str
    correlation_id: str
    volume_sha256: str
    mask_sha256: str
    segmentation_model: dict[str, str]
    classification_model: dict[str, str]
    timings: dict[str, float]
    ingest_qa: dict[str, Any]
    first_seen_at: str = ""
    model_vs_classical_dice: float | None = None
    extra_metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "instance_set_sha256": self.instance_set_sha256,
            "correlation_id": self.correlation_id,
            "first_seen_at": self.first_seen_at,
            "volume_sha256": self.volume_sha256,
            "mask_sha256": self.mask_sha256,
            "segmentation_model": dict(self.segmentation_model),
            "classification_model": dict(self.classification_model),
            "model_vs_classical_dice": self.model_vs_classical_dice,
            "timings": dict(self.timings),
            "ingest_qa": self.ingest_qa,
            "extra_metrics": dict(self.extra_metrics),
        }


def result_csv_bytes(results: Sequence[SeriesResult]) -> bytes:
    """CSV text (UTF-8, ``\\n`` line ends) with the header and one row per result."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(RESULT_COLUMNS)
    for result in results:
        writer.writerow(result.csv_row())
    return buffer.getvalue().encode("utf-8")


def result_json_document(result: SeriesResult, provenance: Provenance) -> dict[str, Any]:
    return {
        **result.to_json_fields(),
        "provenance": provenance.to_dict(),
        "research_use_disclaimer": RESEARCH_USE_DISCLAIMER,
    }


def result_json_bytes(result: SeriesResult, provenance: Provenance) -> bytes:
    document = result_json_document(result, provenance)
    return (json.dumps(document, indent=2, sort_keys=False) + "\n").encode("utf-8")


def read_result_rows(data: bytes) -> list[dict[str, str]]:
    """Parse result CSV bytes; raises ValueError unless the header is exactly the columns."""
    reader = csv.reader(io.StringIO(data.decode("utf-8")))
    rows = list(reader)
    if not rows or tuple(rows[0]) != RESULT_COLUMNS:
        raise ValueError(f"unexpected result CSV header: {rows[0] if rows else None}")
    return [dict(zip(RESULT_COLUMNS, row, strict=True)) for row in rows[1:]]


def upsert_results_csv(path: Path, rows_csv: bytes) -> int:
    """Merge the rows of a ``result.csv`` into the collecting ``results.csv`` at ``path``.

    A row replaces an existing one with the same series and classification model, so a
    re-run does not duplicate rows. Written atomically; returns the number of rows.
    """
    existing = read_result_rows(path.read_bytes()) if path.is_file() else []
    key_columns = ("series_instance_uid", "classification_model")
    merged = {tuple(r[c] for c in key_columns): r for r in existing}
    for row in read_result_rows(rows_csv):
        merged[tuple(row[c] for c in key_columns)] = row
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(RESULT_COLUMNS)
    for row in merged.values():
        writer.writerow([row[c] for c in RESULT_COLUMNS])
    replace_file(path, buffer.getvalue().encode("utf-8"), temp_prefix=".results-")
    return len(merged)
