"""Bundle contract: a user's own bundle (1 channel, other size) loads without code changes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from covidct_classify.bundle_format import METADATA_FILE, WEIGHTS_FILE
from covidct_classify.classifier import CovidClassifier
from covidct_classify.loading import load_classifier
from covidct_core.errors import ModelLoadError
from covidct_core.messages import ModelRef
from tests.classify.bundle_helpers import TINY_SPATIAL_SIZE, tiny_densenet, write_tiny_bundle
from tests.classify.conftest import PhantomLungs


def test_one_channel_user_bundle_loads_and_predicts(
    tiny_bundle: Path, phantom: PhantomLungs
) -> None:
    classifier = load_classifier(tiny_bundle, device_preference="cpu")
    assert classifier.config.in_channels == 1
    assert classifier.config.spatial_size == TINY_SPATIAL_SIZE
    assert classifier.model.tag == "tiny_cls@0.0.1"
    v = phantom.volume
    prediction = classifier.predict(v.array, phantom.mask, v.spacing)
    assert 0.0 <= prediction.probability_covid19 <= 1.0
    assert prediction.probability_covid19 + prediction.probability_non_covid19 == pytest.approx(1.0)
    # the loaded network is the one that was written: same output as the original module
    x = np.random.default_rng(0).random((1, 1, *TINY_SPATIAL_SIZE), dtype=np.float32)
    expected = torch.softmax(tiny_densenet(1).eval()(torch.from_numpy(x)), dim=1)
    assert classifier.scores(x) == pytest.approx(expected.detach().numpy(), abs=1e-5)


def test_fp16_bundle_runs_in_fp32_on_cpu(tmp_path: Path) -> None:
    bundle = write_tiny_bundle(tmp_path / "half", in_channels=2, half=True)
    classifier = load_classifier(bundle, device_preference="cpu")
    assert all(p.dtype == torch.float32 for p in classifier.network.parameters())
    x = np.random.default_rng(1).random((2, 2, *TINY_SPATIAL_SIZE), dtype=np.float32)
    scores = classifier.scores(x)
    assert scores.shape == (2, 2)
    assert scores.sum(axis=1) == pytest.approx([1.0, 1.0])


def test_tampered_weights_are_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    copy = tmp_path / "tampered"
    shutil.copytree(tiny_bundle, copy)
    with (copy / WEIGHTS_FILE).open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelLoadError, match="sha256"):
        load_classifier(copy, device_preference="cpu")


def test_bundle_without_input_contract_is_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    copy = tmp_path / "no_contract"
    shutil.copytree(tiny_bundle, copy)
    metadata = json.loads((copy / METADATA_FILE).read_text())
    del metadata["network_data_format"]["inputs"]["image"]["num_channels"]
    (copy / METADATA_FILE).write_text(json.dumps(metadata))
    with pytest.raises(ModelLoadError, match="input contract"):
        load_classifier(copy, device_preference="cpu")


def test_probabilities_passthrough_when_activation_none(tiny_bundle: Path) -> None:
    metadata = json.loads((tiny_bundle / METADATA_FILE).read_text())
    metadata["network_data_format"]["outputs"]["pred"]["activation"] = "none"

    class Fixed(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tensor([[0.2, 0.6]]).repeat(x.shape[0], 1)

    classifier = CovidClassifier(Fixed(), metadata, ModelRef("fixed", "1", "0" * 64))
    scores = classifier.scores(np.zeros((1, 1, *TINY_SPATIAL_SIZE), dtype=np.float32))
    assert scores[0] == pytest.approx([0.25, 0.75])


def test_inference_config_builds_the_stated_network(tiny_bundle: Path) -> None:
    inference = json.loads((tiny_bundle / "configs" / "inference.json").read_text())
    network = ConfigParser({"network_def": inference["network_def"]}).get_parsed_content(
        "network_def"
    )
    metadata = json.loads((tiny_bundle / METADATA_FILE).read_text())
    channels = metadata["network_data_format"]["inputs"]["image"]["num_channels"]
    first_conv = next(m for m in network.modules() if isinstance(m, torch.nn.Conv3d))
    assert first_conv.in_channels == channels == 1
