"""The two segmenters the stage can use: the MONAI model (with a classical QA cross-check)
and the classical algorithm alone. Both return a uint8 mask on the input grid."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import structlog
import torch
import torch.nn.functional as F

from covidct_core.errors import PermanentError
from covidct_core.messages import ModelRef
from covidct_core.storage import ObjectStore
from covidct_core.volume_io import Volume
from covidct_segment import classical
from covidct_segment.bundle import LoadedBundle, load_bundle, resolve_device
from covidct_segment.inference import InferenceSettings, segment_volume

log = structlog.get_logger()

CLASSICAL_NAME = "classical"
QA_GRID_MM = 4.0
NO_CLASSICAL_LUNG = "SEG_CLASSICAL_NO_LUNG"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[4] / "models" / "lung_seg"


@dataclass(frozen=True)
class SegmentResult:
    """A mask on the input grid, the model-vs-classical Dice (None if not checked)."""

    mask: npt.NDArray[np.uint8]
    classical_dice: float | None
    qa_flags: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    windows: int = 0


class Segmenter(Protocol):
    model_ref: ModelRef

    def segment(self, volume: Volume) -> SegmentResult: ...


def package_version() -> str:
    try:
        return package_metadata.version("covidct-segment")
    except package_metadata.PackageNotFoundError:
        return "0.0.0"


def classical_model_ref() -> ModelRef:
    """name "classical", the package version, and the sha256 of the algorithm's source."""
    source = Path(classical.__file__).read_bytes()
    return ModelRef(CLASSICAL_NAME, package_version(), hashlib.sha256(source).hexdigest())


class ClassicalSegmenter:
    """The threshold-and-components algorithm as the segmenter (no cross-check)."""

    def __init__(self, params: classical.ClassicalParams | None = None) -> None:
        self.params = params or classical.ClassicalParams()
        self.model_ref = classical_model_ref()

    def segment(self, volume: Volume) -> SegmentResult:
        started = time.perf_counter()
        result = classical.segment_lungs_classical(volume, self.params)
        return SegmentResult(result.mask, None, [], {"classical_s": time.perf_counter() - started})


class ModelSegmenter:
    """The bundle's network; cross-checked against the classical mask on the model grid."""

    def __init__(
        self,
        bundle: LoadedBundle,
        device: torch.device,
        autocast: torch.dtype | None = None,
        settings: InferenceSettings | None = None,
    ) -> None:
        self.bundle = bundle
        self.model_ref = bundle.model_ref
        self.device = device
        self.autocast = autocast
        self.settings = settings or InferenceSettings.from_metadata(bundle.metadata)

    def segment(self, volume: Volume) -> SegmentResult:
        output = segment_volume(
            self.bundle.model, volume, self.settings, self.device, self.autocast
        )
        timings = dict(output.timings)
        started = time.perf_counter()
        flags: list[str] = []
        try:
            score: float | None = classical_agreement(
                output.grid_hu, output.grid_mask, output.grid.spacing_zyx
            )
        except PermanentError:
            score = None
            flags.append(NO_CLASSICAL_LUNG)
        timings["qa_s"] = time.perf_counter() - started
        return SegmentResult(output.mask, score, flags, timings, output.windows)


def classical_agreement(
    hu: npt.NDArray[np.float32],
    mask: npt.NDArray[np.uint8],
    spacing_zyx: tuple[float, float, float],
) -> float:
    """Dice of ``mask`` vs the classical mask, both on a ~4 mm grid (2x2x2 block means of the
    model grid; cheap enough to run on every series). Raises NO_LUNG_FOUND from classical."""
    factors = tuple(max(1, round(QA_GRID_MM / s)) for s in spacing_zyx)
    coarse_hu = F.avg_pool3d(torch.from_numpy(hu)[None, None], factors, ceil_mode=True)
    coarse_mask = F.avg_pool3d(
        torch.from_numpy(mask.astype(np.float32))[None, None], factors, ceil_mode=True
    )
    spacing = (
        spacing_zyx[0] * factors[0],
        spacing_zyx[1] * factors[1],
        spacing_zyx[2] * factors[2],
    )
    reference = classical.lung_labels(coarse_hu[0, 0].numpy(), spacing, classical.ClassicalParams())
    return classical.dice(coarse_mask[0, 0].numpy() >= 0.5, reference.labels)


def build_segmenter(
    kind: str = "model",
    model_uri: str | None = None,
    store: ObjectStore | None = None,
    device_preference: str = "auto",
    cache_dir: Path | None = None,
) -> Segmenter:
    """``kind`` is "model" (the bundle at ``model_uri``, default the packaged lung_seg) or
    "classical"."""
    if kind == CLASSICAL_NAME:
        return ClassicalSegmenter()
    device, autocast = resolve_device(device_preference)
    bundle = load_bundle(model_uri or str(DEFAULT_MODEL_DIR), store, cache_dir, device)
    return ModelSegmenter(bundle, device, autocast)
