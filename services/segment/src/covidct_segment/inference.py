"""Model inference: resample + window, sliding-window UNet, post-process, restore the grid.

The output mask is a uint8 array on exactly the input volume's grid. Deterministic on CPU.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog
import torch
import torch.nn.functional as F
from monai.inferers.utils import sliding_window_inference

from covidct_core.errors import PermanentError
from covidct_core.volume_io import Volume
from covidct_segment.classical import body_mask
from covidct_segment.postprocess import clean_lung_mask
from covidct_segment.preprocess import (
    ModelGrid,
    Preprocessing,
    model_grid,
    resample_hu,
    restore_mask,
    window,
)

log = structlog.get_logger()

MIN_GRID_VOXELS = 16
LUNG_CHANNEL = 1


@dataclass(frozen=True)
class InferenceSettings:
    """Preprocessing and sliding-window parameters (from the bundle, or overridden)."""

    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    roi_size: tuple[int, int, int] = (128, 128, 128)
    sw_batch_size: int = 1
    overlap: float = 0.25
    mode: str = "gaussian"
    second_component_ratio: float = 0.12
    restrict_to_body: bool = True
    body_threshold_hu: float = -500.0

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any], **overrides: Any) -> InferenceSettings:
        """Read ``network_data_format.inputs.image`` and the ``inference`` block."""
        image = metadata.get("network_data_format", {}).get("inputs", {}).get("image", {})
        block = metadata.get("inference", {})
        pixdim = image.get("pixdim", [2.0, 2.0, 2.0])
        hu = image.get("hu_window", [-1000.0, 500.0])
        roi = list(block.get("roi_size") or image.get("spatial_shape") or [128, 128, 128])
        if image.get("spatial_axes", "zyx") == "xyz":
            roi = roi[::-1]
        post = block.get("postprocess", {})
        settings = cls(
            preprocessing=Preprocessing(
                (float(pixdim[0]), float(pixdim[1]), float(pixdim[2])), float(hu[0]), float(hu[1])
            ),
            roi_size=(int(roi[0]), int(roi[1]), int(roi[2])),
            sw_batch_size=int(block.get("sw_batch_size", 1)),
            overlap=float(block.get("overlap", 0.25)),
            mode=str(block.get("mode", "gaussian")),
            second_component_ratio=float(post.get("second_component_ratio", 0.12)),
            restrict_to_body=bool(post.get("restrict_to_body", True)),
        )
        return replace(settings, **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class Segmentation:
    """A lung mask on the input grid, plus the model-grid view used for QA."""

    mask: npt.NDArray[np.uint8]
    grid: ModelGrid
    grid_mask: npt.NDArray[np.uint8]
    grid_hu: npt.NDArray[np.float32]
    windows: int
    timings: dict[str, float]


class _CountingPredictor:
    """Calls the model and counts the windows it saw."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.windows = 0

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.windows += int(batch.shape[0])
        out: torch.Tensor = self.model(batch)
        return out.float()


def lung_voxels(scores: torch.Tensor) -> torch.Tensor:
    """uint8 map of voxels whose highest-scoring channel is the lung channel. For two
    channels this is a comparison (much faster on CPU than argmax over the channel axis)."""
    if scores.shape[0] == 2:
        return (scores[LUNG_CHANNEL] > scores[1 - LUNG_CHANNEL]).to(torch.uint8)
    return (scores.argmax(dim=0) == LUNG_CHANNEL).to(torch.uint8)


def check_size(grid: ModelGrid) -> None:
    if min(grid.shape) < MIN_GRID_VOXELS:
        mm = [round(n * s, 1) for n, s in zip(grid.shape, grid.spacing_zyx, strict=True)]
        raise PermanentError(
            "VOLUME_TOO_SMALL",
            f"volume extent (z, y, x) {mm} mm is under {MIN_GRID_VOXELS} model voxels on an axis",
        )


def inside_body(hu: torch.Tensor, threshold_hu: float) -> npt.NDArray[np.uint8]:
    """The body (largest tissue component, holes filled per slice) on the model grid,
    computed on a 2x coarser grid: lungs lie well inside it, so its edge need not be exact."""
    coarse = F.avg_pool3d(hu[None, None], 2, ceil_mode=True)[0, 0].numpy()
    body = body_mask(coarse, threshold_hu).astype(np.uint8)
    full = body.repeat(2, axis=0).repeat(2, axis=1).repeat(2, axis=2)
    z, y, x = hu.shape
    return np.ascontiguousarray(full[:z, :y, :x])


@contextlib.contextmanager
def _autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def segment_volume(
    model: torch.nn.Module,
    volume: Volume,
    settings: InferenceSettings,
    device: torch.device,
    autocast: torch.dtype | None = None,
) -> Segmentation:
    """Segment the lungs of ``volume`` (int16 HU) with ``model``; mask on the input grid."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    grid = model_grid(volume, settings.preprocessing)
    check_size(grid)
    hu = resample_hu(volume, grid)
    image = window(hu.clone(), settings.preprocessing).to(device)
    timings["preprocess_s"] = time.perf_counter() - started

    started = time.perf_counter()
    predictor = _CountingPredictor(model)
    with torch.inference_mode(), _autocast(device, autocast):
        logits = sliding_window_inference(
            image,
            roi_size=settings.roi_size,
            sw_batch_size=settings.sw_batch_size,
            predictor=predictor,
            overlap=settings.overlap,
            mode=settings.mode,
        )
    if not isinstance(logits, torch.Tensor):
        raise TypeError("sliding_window_inference returned no tensor")
    raw = lung_voxels(logits[0]).cpu().numpy()
    timings["infer_s"] = time.perf_counter() - started

    started = time.perf_counter()
    if settings.restrict_to_body:
        raw &= inside_body(hu[0, 0], settings.body_threshold_hu)
    if not raw.any():
        raise PermanentError("NO_LUNG_FOUND", "the model found no lung in the volume")
    grid_mask = clean_lung_mask(raw, grid.spacing_zyx, settings.second_component_ratio)
    mask = restore_mask(grid_mask, grid)
    timings["postprocess_s"] = time.perf_counter() - started
    log.info(
        "lungs_segmented",
        windows=predictor.windows,
        grid=list(grid.shape),
        **{k: round(v, 3) for k, v in timings.items()},
    )
    return Segmentation(mask, grid, grid_mask, hu[0, 0].numpy(), predictor.windows, timings)
