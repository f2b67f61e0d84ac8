"""The two segmenters the stage can use: the MONAI model (with a classical QA cross-check)
and the classical algorithm alone. Both return a uint8 mask on the input grid."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import structlog
import torch

from covidct_core.errors import PermanentError
from covidct_core.messages import ModelRef
from covidct_core.storage import ObjectStore
from covidct_core.volume_io import Volume
from covidct_segment import classical
from covidct_segment.bundle import LoadedBundle, load_bundle, resolve_device
from covidct_segment.inference import (
    CoarseView,
    InferenceSettings,
    coarse_mask,
    segment_volume,
)

log = structlog.get_logger()

CLASSICAL_NAME = "classical"
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


# work a caller wants done beside the segmentation (the stage checks the volume's sha256)
SideTask = Callable[[], None]


class Segmenter(Protocol):
    model_ref: ModelRef

    def segment(self, volume: Volume, beside: SideTask | None = None) -> SegmentResult:
        """The lung mask of ``volume``; ``beside`` has run when this returns or raises."""
        ...


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

    def segment(self, volume: Volume, beside: SideTask | None = None) -> SegmentResult:
        started = time.perf_counter()
        try:
            result = classical.segment_lungs_classical(volume, self.params)
        finally:
            if beside is not None:
                beside()
        return SegmentResult(result.mask, None, [], {"classical_s": time.perf_counter() - started})


class ModelSegmenter:
    """The bundle's network, cross-checked against the classical mask on the ~4 mm grid.

    The cross-check runs on a helper thread (scipy releases the GIL): on the CPU beside the
    post-processing, after the windows (both cores are busy with the network until then);
    on an accelerator beside the network, from the start. The caller's side task runs on a
    second helper thread, from the end of the windows on the CPU (beside the coarse view,
    the post-processing and the cross-check: the three share the two cores evenly), from the
    start on an accelerator."""

    def __init__(
        self,
        bundle: LoadedBundle,
        device: torch.device,
        autocast: torch.dtype | None = None,
        settings: InferenceSettings | None = None,
        check_during_inference: bool | None = None,
    ) -> None:
        self.bundle = bundle
        self.model_ref = bundle.model_ref
        self.device = device
        self.autocast = autocast
        self.settings = settings or InferenceSettings.from_metadata(bundle.metadata)
        # default: beside the network only when the network does not run on the CPU
        self.check_during_inference = (
            device.type != "cpu" if check_during_inference is None else check_during_inference
        )
        self._helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segment-qa")
        self._side_helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segment-side")

    def segment(self, volume: Volume, beside: SideTask | None = None) -> SegmentResult:
        checks: list[Future[npt.NDArray[np.bool_] | None]] = []
        side: list[Future[None]] = []

        def start_side_task() -> None:
            if beside is not None and not side:
                side.append(self._side_helper.submit(beside))

        def start_helper(coarse: CoarseView) -> None:
            checks.append(self._helper.submit(classical_lungs, coarse))
            if self.check_during_inference:
                start_side_task()

        try:
            output = segment_volume(
                self.bundle.model,
                volume,
                self.settings,
                self.device,
                self.autocast,
                cross_check=start_helper,
                check_during_inference=self.check_during_inference,
                after_windows=start_side_task,
            )
        finally:
            helper_work: list[Future[Any]] = [*checks, *side]
            wait(helper_work)  # the helper never runs on behind a failure
            if beside is not None and not side:
                beside()  # the segmentation stopped before the helper started
        for task in side:
            task.result()
        started = time.perf_counter()
        reference = checks[0].result() if checks else None
        flags: list[str] = []
        score: float | None = None
        if reference is None or output.coarse is None:
            flags.append(NO_CLASSICAL_LUNG)
        else:
            score = classical.dice(coarse_mask(output.grid_mask, output.coarse.factors), reference)
        timings = {**output.timings, "qa_s": time.perf_counter() - started}
        return SegmentResult(output.mask, score, flags, timings, output.windows)


def classical_lungs(coarse: CoarseView) -> npt.NDArray[np.bool_] | None:
    """The classical lungs on the coarse grid (sharing its body), None if it finds none."""
    try:
        found = classical.lung_labels(
            coarse.hu, coarse.spacing_zyx, classical.ClassicalParams(), body=coarse.body
        )
    except PermanentError:
        return None
    lungs: npt.NDArray[np.bool_] = found.labels > 0
    return lungs


def build_segmenter(
    kind: str = "model",
    model_uri: str | None = None,
    store: ObjectStore | None = None,
    device_preference: str = "auto",
    cache_dir: Path | None = None,
    sw_batch_size: int | None = None,
) -> Segmenter:
    """``kind`` is "model" (the bundle at ``model_uri``, default the packaged lung_seg) or
    "classical". ``sw_batch_size`` overrides the bundle's windows per forward pass."""
    if kind == CLASSICAL_NAME:
        return ClassicalSegmenter()
    device, autocast = resolve_device(device_preference)
    bundle = load_bundle(model_uri or str(DEFAULT_MODEL_DIR), store, cache_dir, device)
    settings = InferenceSettings.from_metadata(bundle.metadata, sw_batch_size=sw_batch_size)
    return ModelSegmenter(bundle, device, autocast, settings)
