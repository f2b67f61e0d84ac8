"""The covid_cls bundle contract: what ``configs/metadata.json`` and ``configs/inference.json``
contain, and a writer for bundles (used by the training script and by tests).

Layout (like MONAI's model zoo)::

    configs/metadata.json    version, changelog, network_data_format, weights sha256, ...
    configs/inference.json   MONAI ConfigParser view: network_def + postprocessing
    models/model.ts          TorchScript; input (B, C, X, Y, Z), output (B, 2) logits
    docs/README.md           model card

A user's own classifier (e.g. a Clara-style DenseNet121 with 1 or 2 input channels) works
without code changes when its metadata states ``num_channels``, ``spatial_shape`` and the
preprocessing window, and its ``weights.sha256`` matches ``models/model.ts``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from covidct_classify.preprocess import PreprocessConfig

WEIGHTS_FILE = "models/model.ts"
METADATA_FILE = "configs/metadata.json"
INFERENCE_FILE = "configs/inference.json"
CHANNEL_NAMES = {"0": "image", "1": "lung mask"}


def network_data_format(config: PreprocessConfig, activation: str = "softmax") -> dict[str, Any]:
    """The ``network_data_format`` block: input tensor, output classes, preprocessing."""
    channels = {k: v for k, v in CHANNEL_NAMES.items() if int(k) < config.in_channels}
    return {
        "inputs": {
            "image": {
                "type": "image",
                "format": "hounsfield",
                "modality": "CT",
                "num_channels": config.in_channels,
                "spatial_shape": list(config.spatial_size),
                "spatial_axes": "xyz",
                "dtype": "float32",
                "value_range": [0, 1],
                "is_patch_data": False,
                "channel_def": channels,
            }
        },
        "outputs": {
            "pred": {
                "type": "probabilities",
                "format": "classes",
                "num_channels": 2,
                "spatial_shape": [2],
                "dtype": "float32",
                "value_range": [0, 1],
                "is_onehot": True,
                "activation": activation,
                "channel_def": {"0": "non-COVID-19", "1": "COVID-19"},
            }
        },
        "preprocessing": config.to_metadata(),
    }


def inference_config(config: PreprocessConfig) -> dict[str, Any]:
    """``configs/inference.json``: parseable by ``monai.bundle.ConfigParser``."""
    return {
        "imports": ["$import torch"],
        "bundle_root": ".",
        "device": "$torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
        "network_def": {
            "_target_": "DenseNet121",
            "spatial_dims": 3,
            "in_channels": config.in_channels,
            "out_channels": 2,
        },
        "network": "$torch.jit.load(@bundle_root + '/models/model.ts', map_location=@device)",
        "postprocessing": {"_target_": "Activations", "softmax": True},
        "covidct_preprocessing": {
            **config.to_metadata(),
            "spatial_size": list(config.spatial_size),
            "in_channels": config.in_channels,
            "implementation": "covidct_classify.preprocess.preprocess",
        },
    }


def classifier_metadata(
    name: str,
    version: str,
    config: PreprocessConfig,
    weights_sha256: str,
    weights_dtype: str = "float32",
    changelog: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A complete ``configs/metadata.json`` for a classifier bundle."""
    return {
        "name": name,
        "version": version,
        "changelog": changelog or {version: "initial version"},
        "task": "COVID-19 vs non-COVID-19 classification of a chest CT series",
        "network_data_format": network_data_format(config),
        "weights": {
            "file": WEIGHTS_FILE,
            "format": "torchscript",
            "dtype": weights_dtype,
            "sha256": weights_sha256,
        },
        **extra,
    }


def save_torchscript(network: torch.nn.Module, path: Path, half: bool = False) -> str:
    """Script ``network`` (fp16 storage if ``half``), save it and return its sha256."""
    scripted = torch.jit.script(network.eval().float())
    if half:
        scripted = scripted.half()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(scripted, str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_classifier_bundle(
    directory: Path,
    network: torch.nn.Module,
    name: str,
    version: str,
    config: PreprocessConfig,
    half: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """Write weights, metadata and inference config; return the metadata."""
    sha256 = save_torchscript(network, directory / WEIGHTS_FILE, half=half)
    metadata = classifier_metadata(
        name, version, config, sha256, "float16" if half else "float32", **extra
    )
    (directory / "configs").mkdir(parents=True, exist_ok=True)
    (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    (directory / INFERENCE_FILE).write_text(json.dumps(inference_config(config), indent=2) + "\n")
    return metadata
