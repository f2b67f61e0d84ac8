"""The classify stage: mask-ready in, result files + result-ready out.

Reads the volume, lung mask and ``series.json`` named by a mask-ready message (verifying
their sha256 against the message), runs the classifier, measures the lungs and writes
``results/<job_id>/<model>@<version>/result.csv``, ``result.json`` and ``overview.png``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import UTC, datetime
from typing import Any

import numpy as np
import structlog

from covidct_classify.classifier import CovidClassifier
from covidct_classify.metrics import lung_metrics, metric_qa_flags
from covidct_classify.overview import render_overview, result_lines
from covidct_classify.results import (
    Provenance,
    SeriesResult,
    merge_flags,
    result_csv_bytes,
    result_json_bytes,
    split_probabilities,
)
from covidct_core import __version__ as PIPELINE_VERSION
from covidct_core.errors import ObjectNotFoundError, PermanentError, RetryableError, StorageError
from covidct_core.messages import MASK_READY, Message, ModelRef, ObjectRef, result_ready
from covidct_core.stage import Outbound, completion_record_key
from covidct_core.storage import ObjectStore, sha256_bytes
from covidct_core.volume_io import Volume, read_mha_bytes

log = structlog.get_logger()

STAGE_NAME = "classify"
RESULT_ROUTING_KEY = "result.ready"
INPUT_FIELDS = ("volume", "mask", "series_metadata")  # the objects a mask-ready names
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def results_prefix(job_id: str, model: ModelRef) -> str:
    """``results/<job_id>/<model>@<version>/``"""
    return f"results/{job_id}/{model.tag}/"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ClassifyStage:
    """Implements :class:`covidct_core.stage.Stage` for classification."""

    name = STAGE_NAME
    accepts = (MASK_READY,)

    def __init__(
        self,
        store: ObjectStore,
        classifier: CovidClassifier,
        clock: Clock = utc_now,
        pipeline_version: str = PIPELINE_VERSION,
        write_overview: bool = True,
    ) -> None:
        self.store = store
        self.classifier = classifier
        self.clock = clock
        self.pipeline_version = pipeline_version
        self.write_overview = write_overview
        self._reader = ThreadPoolExecutor(len(INPUT_FIELDS), thread_name_prefix="classify-read")

    def completion_key(self, message: Message) -> str | None:
        return completion_record_key(STAGE_NAME, str(message["job_id"]), self.classifier.model.tag)

    def _read(self, field: str, message: Message) -> tuple[ObjectRef, bytes]:
        try:
            ref = ObjectRef.from_dict(message[field])
        except (KeyError, TypeError, ValueError) as e:
            raise PermanentError("INVALID_MESSAGE", f"bad object reference {field!r}") from e
        if ref.bucket != self.store.bucket:
            raise PermanentError(
                "INVALID_MESSAGE",
                f"{field} is in bucket {ref.bucket!r}, this stage reads {self.store.bucket!r}",
                [ref.key],
            )
        try:
            data = self.store.get_bytes(ref.key)
        except ObjectNotFoundError as e:
            raise RetryableError(f"{field} object {ref.key} not found yet") from e
        except StorageError as e:
            raise RetryableError(f"cannot read {field} object {ref.key}: {e}") from e
        actual = sha256_bytes(data)
        if actual != ref.sha256:
            raise PermanentError(
                "CHECKSUM_MISMATCH",
                f"{field} sha256 {actual} != {ref.sha256} in the message",
                [ref.key],
            )
        return ref, data

    def _load_inputs(self, message: Message) -> tuple[Volume, Volume, dict[str, Any]]:
        # the three reads (each a GET and a sha256, which release the GIL) overlap; all finish
        # before the first failure, in field order, is raised
        reads = [self._reader.submit(self._read, field, message) for field in INPUT_FIELDS]
        wait(reads)
        (_, volume_bytes), (_, mask_bytes), (_, series_bytes) = [r.result() for r in reads]
        volume = read_mha_bytes(volume_bytes)
        mask = read_mha_bytes(mask_bytes)
        if not volume.same_geometry(mask, tol=1e-3):
            raise PermanentError(
                "MASK_GRID_MISMATCH",
                "the lung mask is not on the volume's grid",
                [message["volume"]["key"], message["mask"]["key"]],
            )
        try:
            series = json.loads(series_bytes)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise PermanentError(
                "INVALID_MESSAGE", "series.json is not JSON", [message["series_metadata"]["key"]]
            ) from e
        return volume, mask, series if isinstance(series, dict) else {}

    def handle(self, message: Message) -> list[Outbound]:
        if message.get("schema") != MASK_READY:
            schema = message.get("schema")
            raise PermanentError("INVALID_MESSAGE", f"classify cannot handle {schema}")
        started = time.perf_counter()
        volume, mask_volume, series = self._load_inputs(message)
        read_seconds = time.perf_counter() - started
        mask = np.asarray(mask_volume.array) > 0

        tick = time.perf_counter()
        prediction = self.classifier.predict(volume.array, mask, volume.spacing)
        inference_seconds = time.perf_counter() - tick
        tick = time.perf_counter()
        metrics = lung_metrics(volume.array, mask, volume.spacing)
        metrics_seconds = time.perf_counter() - tick

        model = self.classifier.model
        segmentation = ModelRef.from_dict(message["segmentation_model"])
        upstream_flags = list(message.get("qa_flags") or [])
        ingest_qa = ingest_qa_report(series)
        flags = merge_flags(
            upstream_flags, ingest_decision_codes(ingest_qa), metric_qa_flags(metrics, mask)
        )
        covid, non_covid = split_probabilities(prediction.probability_covid19)
        result = SeriesResult(
            series_instance_uid=str(message["series_instance_uid"]),
            study_instance_uid=str(message["study_instance_uid"]),
            probability_covid19=covid,
            probability_non_covid19=non_covid,
            lung_volume_ml=metrics.lung_volume_ml,
            percent_opacity=metrics.percent_opacity,
            percent_high_opacity=metrics.percent_high_opacity,
            qa_flags=flags,
            segmentation_model=segmentation.tag,
            classification_model=model.tag,
            pipeline_version=self.pipeline_version,
            processed_at=_iso(self.clock()),
        )
        prefix = results_prefix(str(message["job_id"]), model)
        tick = time.perf_counter()
        if self.write_overview:
            png = render_overview(
                volume.array,
                mask,
                volume.spacing,
                volume.direction,
                result_lines(result, metrics.mean_lung_hu),
            )
            self.store.put_bytes(prefix + "overview.png", png, {"content-type": "image/png"})
        overview_seconds = time.perf_counter() - tick

        stage_seconds = time.perf_counter() - started
        timings = {
            "classify_read_seconds": round(read_seconds, 4),
            "classify_inference_seconds": round(inference_seconds, 4),
            "classify_metrics_seconds": round(metrics_seconds, 4),
            "classify_overview_seconds": round(overview_seconds, 4),
            "classify_seconds": round(stage_seconds, 4),
        }
        provenance = Provenance(
            job_id=str(message["job_id"]),
            instance_set_sha256=str(message.get("instance_set_sha256", "")),
            correlation_id=str(message["correlation_id"]),
            first_seen_at=str(message["first_seen_at"]),
            volume_sha256=str(message["volume"]["sha256"]),
            mask_sha256=str(message["mask"]["sha256"]),
            segmentation_model=segmentation.to_dict(),
            classification_model=model.to_dict(),
            model_vs_classical_dice=message.get("model_vs_classical_dice"),
            timings={**message.get("timings", {}), **timings},
            ingest_qa=ingest_qa,
            extra_metrics={"mean_lung_hu": round(metrics.mean_lung_hu, 2)},
        )
        csv_info = self.store.put_bytes(
            prefix + "result.csv", result_csv_bytes([result]), {"content-type": "text/csv"}
        )
        json_info = self.store.put_bytes(
            prefix + "result.json",
            result_json_bytes(result, provenance),
            {"content-type": "application/json"},
        )
        log.info(
            "series_classified",
            job_id=provenance.job_id,
            series_instance_uid=result.series_instance_uid,
            probability_covid19=covid,
            qa_flags=list(flags),
            seconds=timings["classify_seconds"],
        )
        outbound = result_ready(
            message,
            _ref(self.store.bucket, csv_info.key, csv_info.size, csv_info.sha256),
            _ref(self.store.bucket, json_info.key, json_info.size, json_info.sha256),
            model,
            covid,
            list(flags),
            timings,
        )
        return [Outbound(RESULT_ROUTING_KEY, outbound)]


def ingest_qa_report(series_json: dict[str, Any]) -> dict[str, Any]:
    """The ``qa`` section of ingest's ``series.json`` (the whole document if it has none)."""
    qa = series_json.get("qa")
    return qa if isinstance(qa, dict) else series_json


def ingest_decision_codes(qa: dict[str, Any]) -> list[str]:
    """Codes of ingest's assembly decisions (e.g. ``SLICE_GAP``), used as QA flags."""
    decisions = qa.get("decisions")
    if not isinstance(decisions, list):
        return []
    return [str(d["code"]) for d in decisions if isinstance(d, dict) and d.get("code")]


def _ref(bucket: str, key: str, size: int, sha256: str | None) -> ObjectRef:
    if sha256 is None:
        raise RetryableError(f"the store returned no sha256 for {key}")
    return ObjectRef(bucket, key, size, sha256)
