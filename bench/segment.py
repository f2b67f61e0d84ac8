"""Benchmark the segment stage on a real chest series against the bare network.

Prints ``segment_wrapper_ratio`` = segment stage time (read the volume from a local store,
preprocess, sliding-window inference, post-process, classical QA, write the mask) divided by
(number of windows x bare forward time of one window), both measured in this run, plus the
absolute wall and CPU seconds. Target: ratio <= 1.10. The bare passes take the windows as
the stage does, ``sw_batch_size`` at a time (the time of one window is a pass's time divided
by the windows in it), so the ratio measures the wrapper alone, not the batch size.

The stage and the bare forward passes alternate, ``--repeats`` times each, so that both see
the same machine. The ratio is best stage time / best bare time (noise on a shared machine
only ever adds time, so the minimum is the steadiest estimate, as in ``timeit``); the median
of the per-repeat ratios is printed beside it.

Usage: python bench/segment.py [--series DIR] [--threads 2] [--repeats 7]
(default series: LIDC-IDRI-0001 from $COVIDCT_SAMPLES or ../shared/data).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from covidct_core.allocator import retain_freed_memory
from covidct_core.messages import JobIdentity, ObjectRef, series_ready
from covidct_core.storage import LocalStore
from covidct_core.volume_io import Volume, read_reference_series, to_mha_bytes
from covidct_segment.bundle import load_bundle
from covidct_segment.segmenters import ModelSegmenter, SegmentResult, SideTask
from covidct_segment.stage import SegmentStage

REPO = Path(__file__).resolve().parent.parent
JOB = "b3c4d5e6f7a8b9c0"


class RecordingSegmenter:
    """Delegates to the model segmenter and keeps its last result (for the window count)."""

    def __init__(self, inner: ModelSegmenter) -> None:
        self.inner = inner
        self.model_ref = inner.model_ref
        self.last: SegmentResult | None = None

    def segment(self, volume: Volume, beside: SideTask | None = None) -> SegmentResult:
        self.last = self.inner.segment(volume, beside)
        return self.last


def default_series() -> Path:
    samples = Path(os.environ.get("COVIDCT_SAMPLES", str(REPO.parent / "shared" / "data")))
    return next((samples / "lidc-idri-0001").rglob("*.dcm")).parent


def bare_forward_seconds(
    model: torch.nn.Module, roi: tuple[int, int, int], count: int, batch: int
) -> float:
    """Wall time of bare forward passes over ``count`` windows, ``batch`` windows per pass
    as the stage runs them (the bundle's sw_batch_size), after one warm-up pass."""
    full, rest = divmod(count, batch)
    inputs = [torch.rand(batch, 1, *roi)] * full + ([torch.rand(rest, 1, *roi)] if rest else [])
    with torch.inference_mode():
        model(inputs[0])
        started = time.perf_counter()
        for window_batch in inputs:
            model(window_batch)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description="segment stage vs bare forward")
    parser.add_argument("--series", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    retain_freed_memory()  # as the worker entrypoint does
    torch.set_num_threads(args.threads)
    series = args.series or default_series()
    volume = read_reference_series(series)
    bundle = load_bundle(str(REPO / "models" / "lung_seg"))
    segmenter = RecordingSegmenter(ModelSegmenter(bundle, torch.device("cpu")))
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(Path(tmp), bucket="bench")
        info = store.put_bytes(f"volumes/{JOB}/image.mha", to_mha_bytes(volume))
        meta = store.put_bytes(f"volumes/{JOB}/series.json", b"{}")
        identity = JobIdentity(JOB, "1.2", "1.2.3", "bench", "2026-01-01T00:00:00.000Z")
        message = series_ready(
            identity,
            ObjectRef(store.bucket, info.key, info.size, info.sha256 or ""),
            ObjectRef(store.bucket, meta.key, meta.size, meta.sha256 or ""),
            {},
        )
        stage = SegmentStage(store, segmenter)
        stage.handle(message)  # warm-up: allocator, oneDNN kernels
        windows = segmenter.last.windows if segmenter.last else 1
        roi = segmenter.inner.settings.roi_size
        batch = segmenter.inner.settings.sw_batch_size
        ratios, stage_times, cpu_times, bare_times = [], [], [], []
        timings: dict[str, float] = {}
        for _ in range(args.repeats):
            cpu_started, started = time.process_time(), time.perf_counter()
            outbound = stage.handle(message)
            stage_times.append(time.perf_counter() - started)
            if stage_times[-1] == min(stage_times):
                timings = outbound[0].message["timings"]
            cpu_times.append(time.process_time() - cpu_started)
            bare_times.append(bare_forward_seconds(bundle.model, roi, windows, batch))
            ratios.append(stage_times[-1] / bare_times[-1])
    result = segmenter.last
    if result is None:
        raise SystemExit("the stage did not run")
    stage_s = min(stage_times)
    forward_s = min(bare_times) / windows
    ratio = stage_s / min(bare_times)
    print(f"series: {series.name} shape(z,y,x)={volume.array.shape} spacing={volume.spacing}")
    print(f"windows: {result.windows} roi={roi} sw_batch_size={batch}")
    print(f"bare_forward_s_per_window: {forward_s:.3f}")
    print(f"stage_timings (best run): { {k: round(v, 3) for k, v in timings.items()} }")
    print(f"segment_stage_wall_s: {stage_s:.2f} (median {statistics.median(stage_times):.2f})")
    print(f"segment_stage_cpu_s: {statistics.median(cpu_times):.2f}")
    print(f"segment_overhead_s: {stage_s - forward_s * windows:.3f}")
    print(
        f"segment_wrapper_ratio: {ratio:.3f}  (median of per-repeat ratios "
        f"{statistics.median(ratios):.3f}: {[round(r, 3) for r in ratios]})"
    )


if __name__ == "__main__":
    main()
