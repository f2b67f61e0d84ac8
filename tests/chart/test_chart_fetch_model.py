"""The init container script that fetches and verifies a model bundle from S3."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from chart_render import CHART_DIR


def load_fetch_model() -> ModuleType:
    path = CHART_DIR / "files" / "fetch_model.py"
    spec = importlib.util.spec_from_file_location("covidct_chart_fetch_model", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fetch_model = load_fetch_model()
PREFIX = "models/lung_seg/1.0.0/"


class FakePaginator:
    def __init__(self, objects: dict[str, bytes], page_size: int) -> None:
        self.objects = objects
        self.page_size = page_size

    def paginate(self, **params: str) -> list[dict[str, Any]]:
        keys = sorted(k for k in self.objects if k.startswith(params["Prefix"]))
        pages = [keys[i : i + self.page_size] for i in range(0, len(keys), self.page_size)]
        return [{"Contents": [{"Key": k} for k in page]} for page in pages] or [{}]


class FakeS3:
    """Serves objects of one bucket from memory, two keys per listing page."""

    def __init__(self, bucket: str, objects: dict[str, bytes]) -> None:
        self.bucket = bucket
        self.objects = objects
        self.downloads: list[str] = []

    def get_paginator(self, operation_name: str) -> FakePaginator:
        assert operation_name == "list_objects_v2"
        return FakePaginator(self.objects, page_size=2)

    def download_file(self, bucket: str, key: str, filename: str) -> None:
        assert bucket == self.bucket
        self.downloads.append(key)
        Path(filename).write_bytes(self.objects[key])


def bundle(weights: bytes = b"weights", listed: dict[str, str] | None = None) -> dict[str, bytes]:
    files = {"models/model.pt": weights, "configs/inference.json": b"{}"}
    digests = {p: hashlib.sha256(d).hexdigest() for p, d in files.items()}
    meta = {"version": "1.0.0", "sha256": listed if listed is not None else digests}
    files["configs/metadata.json"] = json.dumps(meta).encode()
    return {PREFIX + p: d for p, d in files.items()}


def test_downloads_every_page_and_verifies(tmp_path: Path) -> None:
    s3 = FakeS3("work", bundle())
    fetched = fetch_model.download_bundle(s3, "work", PREFIX, tmp_path / "b")
    assert sorted(fetched) == ["configs/inference.json", "configs/metadata.json", "models/model.pt"]
    assert (tmp_path / "b" / "models" / "model.pt").read_bytes() == b"weights"
    assert fetch_model.verify_bundle(tmp_path / "b") == 2


def test_corrupt_weights_are_refused(tmp_path: Path) -> None:
    objects = bundle()
    objects[PREFIX + "models/model.pt"] = b"tampered"
    fetch_model.download_bundle(FakeS3("work", objects), "work", PREFIX, tmp_path)
    with pytest.raises(
        fetch_model.BundleError, match=re.escape("sha256 mismatch for models/model.pt")
    ):
        fetch_model.verify_bundle(tmp_path)


def test_unlisted_weights_and_missing_checksums_are_refused(tmp_path: Path) -> None:
    fetch_model.download_bundle(FakeS3("work", bundle(listed={})), "work", PREFIX, tmp_path / "a")
    with pytest.raises(fetch_model.BundleError, match="lists no sha256"):
        fetch_model.verify_bundle(tmp_path / "a")
    only_config = {"configs/inference.json": hashlib.sha256(b"{}").hexdigest()}
    objects = bundle(listed=only_config)
    fetch_model.download_bundle(FakeS3("work", objects), "work", PREFIX, tmp_path / "b")
    with pytest.raises(
        fetch_model.BundleError, match=re.escape("weights without a checksum: models/")
    ):
        fetch_model.verify_bundle(tmp_path / "b")


def test_weights_entry_form_is_checked(tmp_path: Path) -> None:
    weights = {"file": "models/model.pt", "sha256": hashlib.sha256(b"weights").hexdigest()}
    objects = {
        PREFIX + "models/model.pt": b"weights",
        PREFIX + "configs/metadata.json": json.dumps({"weights": weights}).encode(),
    }
    fetch_model.download_bundle(FakeS3("work", objects), "work", PREFIX, tmp_path / "ok")
    assert fetch_model.verify_bundle(tmp_path / "ok") == 1
    objects[PREFIX + "models/model.pt"] = b"other"
    fetch_model.download_bundle(FakeS3("work", objects), "work", PREFIX, tmp_path / "bad")
    with pytest.raises(fetch_model.BundleError, match="sha256 mismatch"):
        fetch_model.verify_bundle(tmp_path / "bad")


def test_placeholder_checksum_is_refused(tmp_path: Path) -> None:
    objects = bundle(listed={"models/model.pt": ""})
    fetch_model.download_bundle(FakeS3("work", objects), "work", PREFIX, tmp_path)
    with pytest.raises(fetch_model.BundleError, match=r"empty sha256 for models/model\.pt"):
        fetch_model.verify_bundle(tmp_path)


def test_listed_file_missing_is_refused(tmp_path: Path) -> None:
    objects = bundle()
    del objects[PREFIX + "configs/inference.json"]
    fetch_model.download_bundle(FakeS3("work", objects), "work", PREFIX, tmp_path)
    with pytest.raises(
        fetch_model.BundleError, match=re.escape("configs/inference.json is missing")
    ):
        fetch_model.verify_bundle(tmp_path)


def test_empty_prefix_and_unsafe_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(fetch_model.BundleError, match="no objects"):
        fetch_model.download_bundle(FakeS3("work", {}), "work", PREFIX, tmp_path)
    evil = {PREFIX + "../../etc/passwd": b"x"}
    with pytest.raises(fetch_model.BundleError, match="unsafe object key"):
        fetch_model.download_bundle(FakeS3("work", evil), "work", PREFIX, tmp_path)
    assert not (tmp_path.parent / "etc").exists()
