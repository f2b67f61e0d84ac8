"""Write small classifier bundles for tests (a user's own bundle with the same contract)."""

from __future__ import annotations

from pathlib import Path

import torch
from monai.networks.nets import DenseNet

from covidct_classify.bundle_format import write_classifier_bundle
from covidct_classify.preprocess import PreprocessConfig

TINY_SPATIAL_SIZE = (48, 48, 24)


def tiny_densenet(in_channels: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return DenseNet(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=2,
        init_features=8,
        growth_rate=4,
        block_config=(2, 2),
    )


def write_tiny_bundle(directory: Path, in_channels: int, half: bool = False) -> Path:
    config = PreprocessConfig(spatial_size=TINY_SPATIAL_SIZE, in_channels=in_channels)
    write_classifier_bundle(
        directory, tiny_densenet(in_channels), "tiny_cls", "0.0.1", config, half=half
    )
    return directory
