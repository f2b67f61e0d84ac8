"""Load a MONAI bundle once per process, from a folder or object storage, sha256-checked.

Generic: the bundle's ``configs/metadata.json`` drives the loader. The weights are found
from ``metadata["weights"]`` (``file``, ``format`` = ``torchscript`` | ``state_dict``,
``dtype``, ``sha256``); bundles without that block may instead state ``sha256`` as a string
or a ``{file: sha256}`` mapping and hold ``models/model.ts`` (TorchScript) or
``models/model.pt`` (a state dict for the ``network_def`` of ``configs/inference.json``,
instantiated with ``monai.bundle.ConfigParser``). Weights stored in fp16 are loaded as fp32.

Object-storage URIs: ``s3://<bucket>/models/<name>/<version>/`` or a bare key prefix
``models/<name>/<version>/``; the objects are downloaded into ``cache_dir`` first.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, cast

import structlog
import torch

from covidct_core.errors import ConfigError, ModelLoadError, StorageError
from covidct_core.messages import ModelRef
from covidct_core.storage import ObjectStore, sha256_file

log = structlog.get_logger()

METADATA_FILE = "configs/metadata.json"
INFERENCE_FILE = "configs/inference.json"
DEFAULT_WEIGHTS = ("models/model.ts", "models/model.pt")
DEVICE_PREFERENCES = ("auto", "cpu", "cuda")

_CACHE: dict[tuple[str, str], LoadedBundle] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class LoadedBundle:
    """A loaded model with its metadata and identity."""

    model: torch.nn.Module
    metadata: dict[str, Any]
    model_ref: ModelRef
    root: Path
    inference_config: dict[str, Any]


@dataclass(frozen=True)
class WeightsSpec:
    """Where the weights are, how they are stored, and their expected sha256."""

    file: str
    format: str
    dtype: str
    sha256: str


def default_cache_dir() -> Path:
    return Path(tempfile.gettempdir()) / "covidct-models"


def select_device(preference: str, cuda_available: bool) -> str:
    """``auto`` -> cuda when available else cpu; ``cuda`` without CUDA is a config error."""
    if preference not in DEVICE_PREFERENCES:
        raise ConfigError(
            [f"COVIDCT_DEVICE must be one of {DEVICE_PREFERENCES}, not {preference!r}"]
        )
    if preference == "cuda" and not cuda_available:
        raise ConfigError(["COVIDCT_DEVICE=cuda but no CUDA device is available"])
    if preference == "auto":
        return "cuda" if cuda_available else "cpu"
    return preference


def select_autocast(device: str, bf16_supported: bool) -> torch.dtype | None:
    """bf16 on CUDA when supported, else fp16 on CUDA; none (fp32) on CPU."""
    if device != "cuda":
        return None
    return torch.bfloat16 if bf16_supported else torch.float16


def resolve_device(preference: str) -> tuple[torch.device, torch.dtype | None]:
    """Apply :func:`select_device` and :func:`select_autocast` to this machine; log it."""
    cuda = torch.cuda.is_available()
    device = select_device(preference, cuda)
    bf16 = bool(cuda and torch.cuda.is_bf16_supported())
    autocast = select_autocast(device, bf16)
    log.info(
        "device_selected",
        preference=preference,
        device=device,
        autocast=str(autocast).replace("torch.", "") if autocast else "none",
    )
    return torch.device(device), autocast


def load_bundle(
    uri: str,
    store: ObjectStore | None = None,
    cache_dir: Path | None = None,
    device: torch.device | None = None,
) -> LoadedBundle:
    """Load (once per process and device) the bundle at ``uri``."""
    target = device or torch.device("cpu")
    key = (uri, str(target))
    with _LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        root = _local_root(uri, store, cache_dir or default_cache_dir())
        loaded = load_bundle_dir(root, target)
        _CACHE[key] = loaded
        return loaded


def clear_bundle_cache() -> None:
    with _LOCK:
        _CACHE.clear()


def load_bundle_dir(root: Path, device: torch.device) -> LoadedBundle:
    """Verify and load the bundle in folder ``root`` (no caching)."""
    metadata = _read_json(root / METADATA_FILE, required=True)
    inference = _read_json(root / INFERENCE_FILE, required=False)
    spec = weights_spec(root, metadata)
    path = root / spec.file
    actual = sha256_file(path)
    if actual != spec.sha256:
        raise ModelLoadError(
            f"sha256 of {spec.file} is {actual}, metadata says {spec.sha256}: refusing to load"
        )
    model = _load_weights(path, spec, inference, device)
    name = str(metadata.get("name") or root.name)
    version = str(metadata.get("version") or "")
    if not version:
        raise ModelLoadError(f"{METADATA_FILE} of {root} has no version")
    ref = ModelRef(name, version, actual)
    log.info(
        "bundle_loaded", model=ref.tag, format=spec.format, dtype=spec.dtype, device=str(device)
    )
    return LoadedBundle(model, metadata, ref, root, inference)


def weights_spec(root: Path, metadata: dict[str, Any]) -> WeightsSpec:
    """Read the weights file, format, dtype and expected sha256 from the metadata."""
    block = metadata.get("weights")
    if isinstance(block, dict):
        file = str(block.get("file") or "")
        fmt = str(block.get("format") or _format_of(file))
        spec = WeightsSpec(
            file, fmt, str(block.get("dtype", "float32")), str(block.get("sha256", ""))
        )
    else:
        file = next((f for f in DEFAULT_WEIGHTS if (root / f).is_file()), "")
        declared = metadata.get("sha256")
        sha = declared.get(file, "") if isinstance(declared, dict) else str(declared or "")
        spec = WeightsSpec(file, _format_of(file), "float32", sha)
    if not spec.file or not (root / spec.file).is_file():
        raise ModelLoadError(f"bundle {root} has no weights file ({spec.file or 'none named'})")
    if len(spec.sha256) != 64:
        raise ModelLoadError(f"metadata of {root} states no sha256 for {spec.file}")
    if spec.format not in ("torchscript", "state_dict"):
        raise ModelLoadError(f"unsupported weights format {spec.format!r}")
    return spec


def _format_of(file: str) -> str:
    return "torchscript" if file.endswith(".ts") else "state_dict"


def _load_weights(
    path: Path, spec: WeightsSpec, inference: dict[str, Any], device: torch.device
) -> torch.nn.Module:
    try:
        if spec.format == "torchscript":
            loaded = torch.jit.load(str(path), map_location=device)  # type: ignore[no-untyped-call]
            model = cast(torch.nn.Module, loaded)
        else:
            model = _network_from_config(inference)
            state = torch.load(str(path), map_location=device, weights_only=True)
            if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
                state = state["model"]
            model.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, OSError) as e:
        raise ModelLoadError(f"cannot load {path.name}: {e}") from e
    return model.float().to(device).eval()


def _network_from_config(inference: dict[str, Any]) -> torch.nn.Module:
    if "network_def" not in inference:
        raise ModelLoadError(f"{INFERENCE_FILE} has no network_def for a state-dict bundle")
    from monai.bundle.config_parser import ConfigParser

    parser = ConfigParser({"network_def": inference["network_def"]})
    network = parser.get_parsed_content("network_def")
    if not isinstance(network, torch.nn.Module):
        raise ModelLoadError("network_def did not build a torch module")
    return network


def _read_json(path: Path, required: bool) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise ModelLoadError(f"bundle file {path} is missing")
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"cannot read {path}: {e}") from e
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} is not a JSON object")
    return data


def split_uri(uri: str) -> tuple[str | None, str]:
    """``s3://bucket/prefix/`` -> (bucket, ``prefix/``); a bare prefix -> (None, prefix)."""
    if uri.startswith("s3://"):
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        return bucket, prefix.rstrip("/") + "/"
    return None, uri.rstrip("/") + "/"


def _local_root(uri: str, store: ObjectStore | None, cache_dir: Path) -> Path:
    local = Path(uri).expanduser()
    if not uri.startswith("s3://") and local.is_dir():
        return local.resolve()
    if store is None:
        raise ModelLoadError(f"model {uri!r} is not a local folder and no object store was given")
    bucket, prefix = split_uri(uri)
    if bucket is not None and bucket != store.bucket:
        raise ModelLoadError(
            f"model {uri!r} is in bucket {bucket!r}, the store is {store.bucket!r}"
        )
    return download_bundle(store, prefix, cache_dir)


def download_bundle(store: ObjectStore, prefix: str, cache_dir: Path) -> Path:
    """Copy every object under ``prefix`` into ``cache_dir/<prefix>`` (verifying sha256)."""
    target = cache_dir / PurePosixPath(prefix.rstrip("/"))
    try:
        objects = list(store.list(prefix))
        if not objects:
            raise ModelLoadError(f"no bundle objects under {prefix!r} in bucket {store.bucket!r}")
        for info in objects:
            relative = info.key[len(prefix) :]
            destination = target / PurePosixPath(relative)
            if destination.is_file() and info.sha256 and sha256_file(destination) == info.sha256:
                continue
            tmp = destination.with_name(destination.name + f".part{os.getpid()}")
            stored = store.download_file(info.key, tmp)
            if stored.sha256 and sha256_file(tmp) != stored.sha256:
                tmp.unlink(missing_ok=True)
                raise ModelLoadError(f"download of {info.key} does not match its sha256")
            tmp.replace(destination)
    except StorageError as e:
        raise ModelLoadError(f"cannot download bundle {prefix!r}: {e}") from e
    log.info("bundle_downloaded", prefix=prefix, objects=len(objects))
    return target
