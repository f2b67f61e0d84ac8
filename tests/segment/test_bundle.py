"""Bundle loading (local folder, object store, sha256 check) and device selection."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from monai.networks.nets import UNet

from covidct_core.errors import ConfigError, ModelLoadError
from covidct_core.storage import LocalStore, sha256_file
from covidct_segment.bundle import (
    clear_bundle_cache,
    load_bundle,
    load_bundle_dir,
    select_autocast,
    select_device,
    split_uri,
)
from tests.segment.conftest import BUNDLE_DIR


@pytest.mark.parametrize(
    ("preference", "cuda", "expected"),
    [("auto", True, "cuda"), ("auto", False, "cpu"), ("cpu", True, "cpu"), ("cuda", True, "cuda")],
)
def test_select_device(preference: str, cuda: bool, expected: str) -> None:
    assert select_device(preference, cuda) == expected


def test_select_device_refuses_cuda_without_gpu_and_unknown_values() -> None:
    with pytest.raises(ConfigError):
        select_device("cuda", False)
    with pytest.raises(ConfigError):
        select_device("tpu", True)


def test_select_autocast() -> None:
    assert select_autocast("cpu", True) is None
    assert select_autocast("cuda", True) is torch.bfloat16
    assert select_autocast("cuda", False) is torch.float16


def test_split_uri() -> None:
    assert split_uri("s3://work/models/lung_seg/0.1.0") == ("work", "models/lung_seg/0.1.0/")
    assert split_uri("models/lung_seg/0.1.0/") == (None, "models/lung_seg/0.1.0/")


def test_packaged_bundle_loads_with_identity() -> None:
    metadata = json.loads((BUNDLE_DIR / "configs" / "metadata.json").read_text())
    loaded = load_bundle_dir(BUNDLE_DIR, torch.device("cpu"))
    assert loaded.model_ref.name == "lung_seg"
    assert loaded.model_ref.version == metadata["version"]
    assert loaded.model_ref.sha256 == sha256_file(BUNDLE_DIR / "models" / "model.ts")
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    assert not loaded.model.training
    out = loaded.model(torch.zeros(1, 1, 32, 32, 32))
    assert tuple(out.shape) == (1, 2, 32, 32, 32)


def _copy_bundle(tmp_path: Path) -> Path:
    target = tmp_path / "lung_seg"
    shutil.copytree(BUNDLE_DIR, target, ignore=shutil.ignore_patterns("train.py", "__pycache__"))
    return target


def test_sha256_mismatch_is_refused(tmp_path: Path) -> None:
    copy = _copy_bundle(tmp_path)
    meta_path = copy / "configs" / "metadata.json"
    metadata = json.loads(meta_path.read_text())
    metadata["weights"]["sha256"] = "0" * 64
    meta_path.write_text(json.dumps(metadata))
    with pytest.raises(ModelLoadError, match="sha256"):
        load_bundle_dir(copy, torch.device("cpu"))


def test_tampered_weights_are_refused(tmp_path: Path) -> None:
    copy = _copy_bundle(tmp_path)
    weights = copy / "models" / "model.ts"
    weights.write_bytes(weights.read_bytes() + b"\0")
    with pytest.raises(ModelLoadError):
        load_bundle_dir(copy, torch.device("cpu"))


def test_loads_from_object_store_prefix_once(tmp_path: Path) -> None:
    clear_bundle_cache()
    store = LocalStore(tmp_path / "store", bucket="work")
    metadata = json.loads((BUNDLE_DIR / "configs" / "metadata.json").read_text())
    prefix = f"models/lung_seg/{metadata['version']}/"
    for relative in ("configs/metadata.json", "configs/inference.json", "models/model.ts"):
        store.put_file(prefix + relative, BUNDLE_DIR / relative)
    cache = tmp_path / "cache"
    first = load_bundle(f"s3://work/{prefix}", store, cache)
    assert (cache / prefix / "models" / "model.ts").is_file()
    assert first.model_ref.sha256 == sha256_file(BUNDLE_DIR / "models" / "model.ts")
    assert load_bundle(f"s3://work/{prefix}", store, cache) is first
    with pytest.raises(ModelLoadError):
        load_bundle("s3://other-bucket/models/lung_seg/9/", store, cache)
    with pytest.raises(ModelLoadError):
        load_bundle("models/missing/1/", store, cache)
    clear_bundle_cache()


def test_state_dict_bundle_with_network_def(tmp_path: Path) -> None:
    """Another bundle with the same contract: model.pt + network_def, no covidct code."""
    torch.manual_seed(0)
    net = UNet(spatial_dims=3, in_channels=1, out_channels=2, channels=(4, 8), strides=(2,))
    (tmp_path / "configs").mkdir()
    (tmp_path / "models").mkdir()
    torch.save(net.state_dict(), tmp_path / "models" / "model.pt")
    network_def = {
        "_target_": "UNet",
        "spatial_dims": 3,
        "in_channels": 1,
        "out_channels": 2,
        "channels": [4, 8],
        "strides": [2],
    }
    (tmp_path / "configs" / "inference.json").write_text(json.dumps({"network_def": network_def}))
    metadata = {
        "name": "other_seg",
        "version": "2.0.0",
        "sha256": {"models/model.pt": sha256_file(tmp_path / "models" / "model.pt")},
    }
    (tmp_path / "configs" / "metadata.json").write_text(json.dumps(metadata))
    loaded = load_bundle_dir(tmp_path, torch.device("cpu"))
    assert loaded.model_ref.tag == "other_seg@2.0.0"
    x = torch.rand(1, 1, 16, 16, 16)
    net.eval()
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), net(x))


def test_window_batch_override_from_the_environment() -> None:
    """COVIDCT_SW_BATCH_SIZE overrides the bundle's windows per pass; 0 keeps the bundle's;
    bad values are listed with the other problems."""
    from covidct_core.errors import ConfigError
    from covidct_segment.main import read_segment_settings
    from covidct_segment.segmenters import ModelSegmenter, build_segmenter

    assert read_segment_settings({}).window_batch == 0
    assert read_segment_settings({"COVIDCT_SW_BATCH_SIZE": "4"}).window_batch == 4
    with pytest.raises(ConfigError) as info:
        read_segment_settings({"COVIDCT_SW_BATCH_SIZE": "-1", "COVIDCT_SEGMENTER": "magic"})
    assert len(info.value.problems) == 2
    default = build_segmenter("model", device_preference="cpu")
    custom = build_segmenter("model", device_preference="cpu", sw_batch_size=4)
    assert isinstance(default, ModelSegmenter) and isinstance(custom, ModelSegmenter)
    assert default.settings.sw_batch_size == 2 and custom.settings.sw_batch_size == 4
