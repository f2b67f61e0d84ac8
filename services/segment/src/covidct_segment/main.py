"""``covidct-segment``: the segmentation worker process (thin shell)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from covidct_core.config import env_field, read_model_settings, read_settings
from covidct_core.entrypoint import BuiltStage, WorkerContext, exit_with, serve_stage
from covidct_core.errors import ConfigError
from covidct_core.s3 import S3Store
from covidct_segment.bundle import split_uri
from covidct_segment.segmenters import build_segmenter
from covidct_segment.stage import SegmentStage


@dataclass(frozen=True)
class SegmentSettings:
    segmenter: str = env_field("COVIDCT_SEGMENTER", "model", help="model | classical")


def build(context: WorkerContext) -> BuiltStage:
    model = read_model_settings(context.environ)
    choice = read_settings(SegmentSettings, context.environ).segmenter
    if choice not in ("model", "classical"):
        raise ConfigError([f"COVIDCT_SEGMENTER must be model or classical, not {choice!r}"])
    bucket, _prefix = split_uri(model.model_uri) if model.model_uri else (None, "")
    # s3://bucket/prefix/ -> that bucket; a bare prefix -> the work bucket; a folder -> local
    store = S3Store(context.s3_client, bucket) if bucket else context.store
    segmenter = build_segmenter(
        choice, model.model_uri or None, store, model.device, Path(model.cache_dir)
    )
    stage = SegmentStage(context.store, segmenter)
    return BuiltStage(stage, readiness={"model": lambda: True})


def main() -> None:
    exit_with(serve_stage("segment", build, os.environ))
