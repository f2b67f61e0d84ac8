"""The committed reference bundle models/covid_cls: integrity, model card, and that it
separates synthetic COVID-like findings from normal lungs and confounders on held-out
phantoms (never used in training: training used phantom seeds 100-107)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from covidct_classify.bundle_format import METADATA_FILE, WEIGHTS_FILE
from covidct_classify.classifier import CovidClassifier
from covidct_classify.evaluation import roc_auc
from covidct_classify.loading import DEFAULT_MODEL_DIR, load_classifier
from covidct_classify.preprocess import preprocess
from covidct_classify.stage import ClassifyStage
from covidct_classify.synthetic import CaseSpec, random_case_spec, synthesize_volume
from covidct_core.phantom import PhantomOptions, make_chest_phantom
from covidct_core.stage import run_stage
from covidct_core.storage import LocalStore
from tests.classify.conftest import PhantomLungs
from tests.classify.stage_helpers import mask_ready_message

# Measured: the training script's held-out AUC is 0.785 (40 cases, docs/training_report.json);
# this test's 18 cases give AUC 0.852, and 1.0 for lesions covering >= 5 % of the lungs. The
# thresholds sit below those values; lesions of 1-5 % are mostly missed by this model.
MIN_TEST_AUC = 0.75
MIN_TEST_AUC_LARGE_LESIONS = 0.95
MIN_REPORTED_HELD_OUT_AUC = 0.75
MAX_WEIGHTS_BYTES = 25 * 1024 * 1024


@pytest.fixture(scope="module")
def reference() -> CovidClassifier:
    return load_classifier(device_preference="cpu")


def test_bundle_integrity_and_contract() -> None:
    metadata = json.loads((DEFAULT_MODEL_DIR / METADATA_FILE).read_text())
    weights = DEFAULT_MODEL_DIR / WEIGHTS_FILE
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == metadata["weights"]["sha256"]
    assert weights.stat().st_size < MAX_WEIGHTS_BYTES
    image = metadata["network_data_format"]["inputs"]["image"]
    assert image["num_channels"] == 2
    assert image["spatial_shape"] == [192, 192, 64]
    assert metadata["network_data_format"]["preprocessing"]["hu_window"] == [-1000.0, 500.0]
    assert metadata["name"] == "covid_cls"
    assert metadata["version"] in metadata["changelog"]
    report = json.loads((DEFAULT_MODEL_DIR / "docs" / "training_report.json").read_text())
    assert report["weights_sha256"] == metadata["weights"]["sha256"]
    auc = metadata["performance"]["held_out_auc"]
    assert auc == report["held_out"]["auc"]
    assert auc >= MIN_REPORTED_HELD_OUT_AUC


def test_model_card_is_honest() -> None:
    metadata = json.loads((DEFAULT_MODEL_DIR / METADATA_FILE).read_text())
    card = (DEFAULT_MODEL_DIR / "docs" / "README.md").read_text()
    for text in (metadata["intended_use"], card):
        lowered = text.lower()
        assert "synthetic" in lowered
        assert "not clinically validated" in lowered
        assert "research" in lowered
    assert f"{metadata['performance']['held_out_auc']:.3f}" in card


def _held_out_phantoms(first: PhantomLungs) -> list[PhantomLungs]:
    others = [
        make_chest_phantom(seed, PhantomOptions(spacing=(2.0, 2.0, 4.0))) for seed in (12, 13)
    ]
    return [first, *(PhantomLungs(p.volume, p.lung_mask > 0) for p in others)]


@pytest.mark.slow
def test_reference_model_separates_held_out_phantoms(
    reference: CovidClassifier, phantom: PhantomLungs
) -> None:
    rng = np.random.default_rng(2024)
    specs: list[CaseSpec] = []
    scores: list[float] = []
    for lungs in _held_out_phantoms(phantom):
        v = lungs.volume
        batch = []
        for i in range(6):
            spec = random_case_spec(rng, covid=i % 2 == 0)
            hu, _ = synthesize_volume(v.array, lungs.mask, v.spacing, spec, rng, v.direction)
            batch.append(preprocess(hu, lungs.mask, v.spacing, reference.config))
            specs.append(spec)
        scores.extend(reference.scores(np.stack(batch))[:, 1].tolist())
    assert roc_auc([s.covid for s in specs], scores) >= MIN_TEST_AUC
    large = [
        (s, p) for s, p in zip(specs, scores, strict=True) if not s.covid or s.fraction >= 0.05
    ]
    assert sum(s.covid for s, _ in large) >= 3
    large_auc = roc_auc([s.covid for s, _ in large], [p for _, p in large])
    assert large_auc >= MIN_TEST_AUC_LARGE_LESIONS


def test_reference_bundle_through_the_stage(
    tmp_path: Path, reference: CovidClassifier, phantom: PhantomLungs
) -> None:
    store = LocalStore(tmp_path / "work")
    message = mask_ready_message(store, phantom.volume, phantom.mask)
    [outbound] = run_stage(ClassifyStage(store, reference), message, store).outbound
    result = outbound.message
    assert result["classification_model"] == reference.model.to_dict()
    assert result["classification_model"]["name"] == "covid_cls"
    key = result["result_csv"]["key"]
    assert key == f"results/{message['job_id']}/covid_cls@1.0.0/result.csv"
    assert 0.0 <= result["probability_covid19"] <= 1.0
