"""CUDA inference with autocast (runs only where a CUDA device exists)."""

from __future__ import annotations

import pytest
import torch

from covidct_segment.bundle import load_bundle, resolve_device
from covidct_segment.classical import dice
from covidct_segment.inference import InferenceSettings, segment_volume
from tests.segment.conftest import BUNDLE_DIR, Phantom

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_cuda_autocast_matches_cpu(phantom: Phantom) -> None:
    device, autocast = resolve_device("cuda")
    assert device.type == "cuda" and autocast in (torch.bfloat16, torch.float16)
    gpu_bundle = load_bundle(str(BUNDLE_DIR), device=device)
    settings = InferenceSettings.from_metadata(gpu_bundle.metadata, sw_batch_size=4)
    on_gpu = segment_volume(gpu_bundle.model, phantom.volume, settings, device, autocast)
    cpu_bundle = load_bundle(str(BUNDLE_DIR))
    on_cpu = segment_volume(cpu_bundle.model, phantom.volume, settings, torch.device("cpu"))
    assert on_gpu.mask.shape == phantom.volume.array.shape
    assert dice(on_gpu.mask, phantom.lung) >= 0.95
    assert dice(on_gpu.mask, on_cpu.mask) >= 0.99
