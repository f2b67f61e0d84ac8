from __future__ import annotations

import io
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covidct_classify.loading import load_classifier
from covidct_classify.results import RESULT_COLUMNS, read_result_rows
from covidct_classify.stage import ClassifyStage
from covidct_core import RESEARCH_USE_DISCLAIMER
from covidct_core.errors import PermanentError, RetryableError
from covidct_core.messages import MASK_READY, RESULT_READY, validate_message
from covidct_core.stage import completion_record_key, run_stage
from covidct_core.storage import LocalStore, sha256_bytes
from covidct_core.volume_io import to_mha_bytes
from tests.classify.conftest import PhantomLungs
from tests.classify.stage_helpers import JOB_ID, mask_ready_message

FIXED_NOW = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


@pytest.fixture
def stage(tmp_path: Path, tiny_bundle: Path) -> ClassifyStage:
    store = LocalStore(tmp_path / "work")
    return ClassifyStage(
        store, load_classifier(tiny_bundle, device_preference="cpu"), clock=lambda: FIXED_NOW
    )


def test_contract(stage: ClassifyStage) -> None:
    assert stage.name == "classify"
    assert stage.accepts == (MASK_READY,)
    assert stage.completion_key({"job_id": JOB_ID}) == completion_record_key(
        "classify", JOB_ID, "tiny_cls@0.0.1"
    )


def test_mask_ready_to_result_ready(stage: ClassifyStage, phantom: PhantomLungs) -> None:
    store = stage.store
    assert isinstance(store, LocalStore)
    message = mask_ready_message(store, phantom.volume, phantom.mask)
    run = run_stage(stage, message, store)
    assert not run.reused
    [outbound] = run.outbound
    assert outbound.routing_key == "result.ready"
    result = validate_message(outbound.message, RESULT_READY)
    assert result["job_id"] == JOB_ID
    assert result["classification_model"]["name"] == "tiny_cls"
    assert result["probability_covid19"] + result["probability_non_covid19"] == pytest.approx(1)
    assert {"SEGMENT_NOTE", "SLICE_GAP"} <= set(result["qa_flags"])
    assert result["timings"]["ingest_seconds"] == 1.25
    assert result["timings"]["segment_seconds"] == 2.5
    assert result["timings"]["classify_seconds"] > 0

    prefix = f"results/{JOB_ID}/tiny_cls@0.0.1/"
    assert result["result_csv"]["key"] == prefix + "result.csv"
    csv_bytes = store.get_bytes(prefix + "result.csv")
    assert sha256_bytes(csv_bytes) == result["result_csv"]["sha256"]
    [row] = read_result_rows(csv_bytes)
    assert list(row) == list(RESULT_COLUMNS)
    assert row["series_instance_uid"] == message["series_instance_uid"]
    assert row["study_instance_uid"] == message["study_instance_uid"]
    assert row["segmentation_model"] == "lung_seg@1.0.0"
    assert row["classification_model"] == "tiny_cls@0.0.1"
    assert row["processed_at"] == "2026-01-02T03:04:05.678Z"
    assert float(row["probability_covid19"]) == result["probability_covid19"]
    assert float(row["lung_volume_ml"]) == pytest.approx(message["lung_volume_ml"], abs=0.1)
    assert row["qa_flags"].split(";") == result["qa_flags"]

    document = json.loads(store.get_bytes(prefix + "result.json"))
    assert sha256_bytes(store.get_bytes(prefix + "result.json")) == result["result_json"]["sha256"]
    provenance = document["provenance"]
    assert provenance["job_id"] == JOB_ID
    assert provenance["instance_set_sha256"] == "cd" * 32
    assert provenance["volume_sha256"] == message["volume"]["sha256"]
    assert provenance["mask_sha256"] == message["mask"]["sha256"]
    assert provenance["segmentation_model"] == message["segmentation_model"]
    assert provenance["classification_model"] == result["classification_model"]
    assert provenance["ingest_qa"]["slices_used"] == 64
    assert provenance["ingest_qa"]["decisions"][0]["code"] == "SLICE_GAP"
    assert provenance["model_vs_classical_dice"] == 0.97
    assert provenance["timings"]["classify_inference_seconds"] > 0
    assert document["research_use_disclaimer"] == RESEARCH_USE_DISCLAIMER

    png = Image.open(io.BytesIO(store.get_bytes(prefix + "overview.png")))
    assert png.format == "PNG"

    again = run_stage(stage, message, store)
    assert again.reused
    assert again.outbound[0].message["message_id"] == result["message_id"]


def test_checksum_mismatch_is_permanent(stage: ClassifyStage, phantom: PhantomLungs) -> None:
    store = stage.store
    assert isinstance(store, LocalStore)
    message = mask_ready_message(store, phantom.volume, phantom.mask)
    store.put_bytes(message["mask"]["key"], b"not the mask")
    with pytest.raises(PermanentError) as info:
        stage.handle(message)
    assert info.value.code == "CHECKSUM_MISMATCH"
    assert message["mask"]["key"] in info.value.inputs


def test_missing_object_is_retryable(stage: ClassifyStage, phantom: PhantomLungs) -> None:
    store = stage.store
    assert isinstance(store, LocalStore)
    message = mask_ready_message(store, phantom.volume, phantom.mask)
    store.delete(message["volume"]["key"])
    with pytest.raises(RetryableError):
        stage.handle(message)


def test_mask_on_another_grid_is_permanent(stage: ClassifyStage, phantom: PhantomLungs) -> None:
    store = stage.store
    assert isinstance(store, LocalStore)
    message = mask_ready_message(store, phantom.volume, phantom.mask)
    shifted = replace(phantom.volume, array=phantom.mask.astype(np.uint8), origin=(5.0, 0.0, 0.0))
    data = to_mha_bytes(shifted)
    info = store.put_bytes(message["mask"]["key"], data)
    message["mask"] = {**message["mask"], "size": info.size, "sha256": info.sha256}
    with pytest.raises(PermanentError) as caught:
        stage.handle(message)
    assert caught.value.code == "MASK_GRID_MISMATCH"


def test_empty_mask_is_permanent(stage: ClassifyStage, phantom: PhantomLungs) -> None:
    store = stage.store
    assert isinstance(store, LocalStore)
    message = mask_ready_message(store, phantom.volume, np.zeros_like(phantom.mask))
    with pytest.raises(PermanentError) as caught:
        stage.handle(message)
    assert caught.value.code == "NO_LUNG_FOUND"


def test_wrong_schema_is_permanent(stage: ClassifyStage) -> None:
    with pytest.raises(PermanentError) as caught:
        stage.handle({"schema": RESULT_READY, "job_id": JOB_ID})
    assert caught.value.code == "INVALID_MESSAGE"
