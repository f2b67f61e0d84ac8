"""Model inference: resample + window, sliding-window UNet, post-process, restore the grid.

The output mask is a uint8 array on exactly the input volume's grid. Deterministic on CPU.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
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
from covidct_segment.postprocess import clean_lung_mask, grid_steps, repeat_to
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
COARSE_GRID_MM = 4.0


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
    """A lung mask on the input grid and on the model grid, and the coarse view (None when
    neither the body restriction nor a cross-check asked for it)."""

    mask: npt.NDArray[np.uint8]
    grid: ModelGrid
    grid_mask: npt.NDArray[np.uint8]
    coarse: CoarseView | None
    windows: int
    timings: dict[str, float]


class WindowPredictor:
    """Calls the model and counts the windows it saw. A two-channel output is reduced to one
    channel, lung minus background score: the window blending is linear, so the blended
    difference is the difference of the blended channels, for half the blending work."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.windows = 0

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.windows += int(batch.shape[0])
        out: torch.Tensor = self.model(batch).float()  # blend in float32, also under autocast
        if out.shape[1] == 2:
            lung = LUNG_CHANNEL
            return out[:, lung : lung + 1] - out[:, 1 - lung : 2 - lung]
        return out


def lung_voxels(scores: torch.Tensor) -> torch.Tensor:
    """uint8 map of lung voxels from the blended scores: a positive lung-minus-background
    score (one channel, see :class:`WindowPredictor`), else the lung channel scoring
    highest."""
    if scores.shape[0] == 1:
        return (scores[0] > 0).to(torch.uint8)
    return (scores.argmax(dim=0) == LUNG_CHANNEL).to(torch.uint8)


def check_size(grid: ModelGrid) -> None:
    if min(grid.shape) < MIN_GRID_VOXELS:
        mm = [round(n * s, 1) for n, s in zip(grid.shape, grid.spacing_zyx, strict=True)]
        raise PermanentError(
            "VOLUME_TOO_SMALL",
            f"volume extent (z, y, x) {mm} mm is under {MIN_GRID_VOXELS} model voxels on an axis",
        )


@dataclass(frozen=True)
class CoarseView:
    """The model-grid HU averaged over blocks of about 4 mm, and the body on that grid: the
    body restriction of the model output and the classical QA cross-check both use it."""

    hu: npt.NDArray[np.float32]
    factors: tuple[int, int, int]
    spacing_zyx: tuple[float, float, float]
    body: npt.NDArray[np.bool_]

    def body_on(self, shape: tuple[int, ...]) -> npt.NDArray[np.uint8]:
        """The body on the model grid of ``shape`` (each coarse voxel repeated back)."""
        return repeat_to(self.body.astype(np.uint8), self.factors, shape)


def coarse_view(
    hu: torch.Tensor, spacing_zyx: tuple[float, float, float], body_threshold_hu: float
) -> CoarseView:
    """Block means of the model-grid HU ``hu`` (z, y, x) on a ~4 mm grid, plus the body
    (largest tissue component, holes filled per slice): lungs lie well inside the body, so
    its edge need not be exact."""
    factors = grid_steps(spacing_zyx, COARSE_GRID_MM)
    coarse = F.avg_pool3d(hu[None, None], factors, ceil_mode=True)[0, 0].numpy()
    spacing = (
        spacing_zyx[0] * factors[0],
        spacing_zyx[1] * factors[1],
        spacing_zyx[2] * factors[2],
    )
    return CoarseView(coarse, factors, spacing, body_mask(coarse, body_threshold_hu))


def coarse_mask(
    mask: npt.NDArray[np.uint8], factors: tuple[int, int, int]
) -> npt.NDArray[np.bool_]:
    """A model-grid mask on the coarse grid: blocks at least half inside."""
    blocks = F.avg_pool3d(
        torch.from_numpy(mask).to(torch.float32)[None, None], factors, ceil_mode=True
    )
    coarse: npt.NDArray[np.bool_] = (blocks[0, 0] >= 0.5).numpy()
    return coarse


@dataclass(frozen=True)
class Prepared:
    """A volume on the model grid: its grid, HU (z, y, x) and the windowed network input."""

    grid: ModelGrid
    hu: torch.Tensor
    image: torch.Tensor


def prepare(volume: Volume, settings: InferenceSettings, device: torch.device) -> Prepared:
    """Resample to the model spacing and window; VOLUME_TOO_SMALL below the minimum grid."""
    grid = model_grid(volume, settings.preprocessing)
    check_size(grid)
    hu = resample_hu(volume, grid)
    image = window(hu.clone(), settings.preprocessing).to(device)
    return Prepared(grid, hu[0, 0], image)


def infer_lungs(
    model: torch.nn.Module,
    image: torch.Tensor,
    settings: InferenceSettings,
    device: torch.device,
    autocast: torch.dtype | None = None,
) -> tuple[npt.NDArray[np.uint8], int]:
    """Sliding-window inference; the raw lung map on the model grid and the window count."""
    predictor = WindowPredictor(model)
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
    raw: npt.NDArray[np.uint8] = lung_voxels(logits[0]).cpu().numpy()
    return raw, predictor.windows


def finish(
    raw: npt.NDArray[np.uint8],
    prepared: Prepared,
    settings: InferenceSettings,
    coarse: CoarseView | None,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Post-process the raw map (inside the body, lungs kept, holes filled) and restore the
    input grid: (mask on the model grid, mask on the input grid). NO_LUNG_FOUND if empty."""
    grid = prepared.grid
    if coarse is not None:
        raw &= coarse.body_on(raw.shape)
    if not raw.any():
        raise PermanentError("NO_LUNG_FOUND", "the model found no lung in the volume")
    grid_mask = clean_lung_mask(raw, grid.spacing_zyx, settings.second_component_ratio)
    return grid_mask, restore_mask(grid_mask, grid)


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
    cross_check: Callable[[CoarseView], None] | None = None,
    check_during_inference: bool = False,
    after_windows: Callable[[], None] | None = None,
) -> Segmentation:
    """Segment the lungs of ``volume`` (int16 HU) with ``model``; mask on the input grid.

    ``cross_check`` is handed the coarse view once it exists: before the windows with
    ``check_during_inference``, else after them (the caller runs its check beside the rest).
    ``after_windows`` is called as soon as the network has seen every window."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    prepared = prepare(volume, settings, device)
    timings["preprocess_s"] = time.perf_counter() - started

    def coarse_of(prepared: Prepared) -> CoarseView:
        view = coarse_view(prepared.hu, prepared.grid.spacing_zyx, settings.body_threshold_hu)
        if cross_check is not None:
            cross_check(view)
        return view

    coarse = None
    if cross_check is not None and check_during_inference:
        coarse = coarse_of(prepared)
    started = time.perf_counter()
    raw, windows = infer_lungs(model, prepared.image, settings, device, autocast)
    timings["infer_s"] = time.perf_counter() - started
    if after_windows is not None:
        after_windows()

    started = time.perf_counter()
    if coarse is None and (settings.restrict_to_body or cross_check is not None):
        coarse = coarse_of(prepared)
    body = coarse if settings.restrict_to_body else None
    grid_mask, mask = finish(raw, prepared, settings, body)
    timings["postprocess_s"] = time.perf_counter() - started
    log.info(
        "lungs_segmented",
        windows=windows,
        grid=list(prepared.grid.shape),
        **{k: round(v, 3) for k, v in timings.items()},
    )
    return Segmentation(mask, prepared.grid, grid_mask, coarse, windows, timings)
