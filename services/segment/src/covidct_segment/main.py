"""``covidct-segment``: the segmentation worker process (thin shell)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from covidct_core.config import env_field, read_model_settings, read_settings
from covidct_core.entrypoint import BuiltStage, WorkerContext, exit_with, serve_stage
from covidct_core.errors import ConfigError
from covidct_core.s3 import S3Store
from covidct_segment.bundle import split_uri
from covidct_segment.segmenters import build_segmenter
from covidct_segment.stage import SegmentStage

MAX_WINDOW_BATCH = 64


@dataclass(frozen=True)
class SegmentSettings:
    segmenter: str = env_field("COVIDCT_SEGMENTER", "model", help="model | classical")
    window_batch: int = env_field(
        "COVIDCT_SW_BATCH_SIZE", 0, help="sliding windows per forward pass; 0 = the bundle's"
    )


def read_segment_settings(environ: Mapping[str, str]) -> SegmentSettings:
    """The segment worker's own settings; every problem listed in one ConfigError."""
    settings = read_settings(SegmentSettings, environ)
    problems = []
    if settings.segmenter not in ("model", "classical"):
        problems.append(f"COVIDCT_SEGMENTER must be model or classical, not {settings.segmenter!r}")
    if not 0 <= settings.window_batch <= MAX_WINDOW_BATCH:
        problems.append(f"COVIDCT_SW_BATCH_SIZE must be 0..{MAX_WINDOW_BATCH} (0: the bundle's)")
    if problems:
        raise ConfigError(problems)
    return settings


def build(context: WorkerContext) -> BuiltStage:
    model = read_model_settings(context.environ)
    settings = read_segment_settings(context.environ)
    choice = settings.segmenter
    bucket, _prefix = split_uri(model.model_uri) if model.model_uri else (None, "")
    # s3://bucket/prefix/ -> that bucket; a bare prefix -> the work bucket; a folder -> local
    store = S3Store(context.s3_client, bucket) if bucket else context.store
    segmenter = build_segmenter(
        choice,
        model.model_uri or None,
        store,
        model.device,
        Path(model.cache_dir),
        sw_batch_size=settings.window_batch or None,
    )
    stage = SegmentStage(context.store, segmenter)
    return BuiltStage(stage, readiness={"model": lambda: True})


def main() -> None:
    exit_with(serve_stage("segment", build, os.environ))
