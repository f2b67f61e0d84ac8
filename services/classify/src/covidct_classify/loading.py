"""Load the classifier bundle (the packaged reference, a folder, or object storage)."""

from __future__ import annotations

from pathlib import Path

from covidct_core.storage import ObjectStore
from covidct_segment.bundle import load_bundle, resolve_device

from covidct_classify.classifier import CovidClassifier

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[4] / "models" / "covid_cls"


def load_classifier(
    model_uri: str | None,
    store: ObjectStore | None = None,
    device_preference: str = "auto",
    cache_dir: Path | None = None,
) -> CovidClassifier:
    """A :class:`CovidClassifier` for the bundle at ``model_uri`` (default: the reference)."""
    device, autocast = resolve_device(device_preference)
    bundle = load_bundle(model_uri or str(DEFAULT_MODEL_DIR), store, cache_dir, device)
    return CovidClassifier(bundle.model, bundle.metadata, bundle.model_ref, device, autocast)
