"""Load the classifier bundle (the packaged reference, a folder, or object storage).

Uses the generic, sha256-checked MONAI bundle loader of ``covidct_segment.bundle`` (loaded
once per process and device), then checks that the metadata states the classifier's input
contract (channels, spatial shape, HU window) and output activation.
"""

from __future__ import annotations

from pathlib import Path

from covidct_classify.classifier import CovidClassifier, output_activation
from covidct_classify.preprocess import PreprocessConfig
from covidct_core.errors import ModelLoadError
from covidct_core.storage import ObjectStore
from covidct_segment.bundle import load_bundle, resolve_device

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[4] / "models" / "covid_cls"


def load_classifier(
    model_uri: str | Path | None = None,
    store: ObjectStore | None = None,
    device_preference: str = "auto",
    cache_dir: Path | None = None,
) -> CovidClassifier:
    """A :class:`CovidClassifier` for the bundle at ``model_uri`` (default: the reference).

    ``device_preference`` is ``auto`` | ``cpu`` | ``cuda`` (COVIDCT_DEVICE). Raises
    ModelLoadError when the bundle is missing, fails its sha256 check or does not state a
    usable input contract.
    """
    uri = str(model_uri) if model_uri else str(DEFAULT_MODEL_DIR)
    device, autocast = resolve_device(device_preference)
    bundle = load_bundle(uri, store, cache_dir, device)
    try:
        PreprocessConfig.from_metadata(bundle.metadata)
        output_activation(bundle.metadata)
    except (KeyError, TypeError, ValueError) as e:
        raise ModelLoadError(
            f"bundle {uri} does not state the classifier input contract: {e}"
        ) from e
    return CovidClassifier(bundle.model, bundle.metadata, bundle.model_ref, device, autocast)
