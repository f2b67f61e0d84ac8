"""``covidct-classify``: the classification worker process (thin shell)."""

from __future__ import annotations

import os
from pathlib import Path

from covidct_classify.loading import load_classifier
from covidct_classify.stage import ClassifyStage
from covidct_core.config import read_model_settings
from covidct_core.entrypoint import BuiltStage, WorkerContext, exit_with, serve_stage
from covidct_core.s3 import S3Store
from covidct_segment.bundle import split_uri


def build(context: WorkerContext) -> BuiltStage:
    model = read_model_settings(context.environ)
    bucket, _prefix = split_uri(model.model_uri) if model.model_uri else (None, "")
    # s3://bucket/prefix/ -> that bucket; a bare prefix -> the work bucket; a folder -> local
    store = S3Store(context.s3_client, bucket) if bucket else context.store
    classifier = load_classifier(
        model.model_uri or None, store, model.device, Path(model.cache_dir)
    )
    stage = ClassifyStage(context.store, classifier)
    return BuiltStage(stage, readiness={"model": lambda: True})


def main() -> None:
    exit_with(serve_stage("classify", build, os.environ))
