"""Download one MONAI bundle from S3 and verify it (init container of segment/classify).

Fetches every object under ``s3://<bucket>/<prefix>`` (``models/<name>/<version>/``) into
``--dest`` and checks the sha256 of each file listed in the bundle's
``configs/metadata.json``: the ``"sha256"`` map (``{"relative/path": "<hex>"}``) and/or
``"weights": {"file": ..., "sha256": ...}``. Every file under ``models/`` must be listed.
Exits non-zero (and the pod does not start) on a missing, extra or corrupt file.

Runs with the stage image's Python (boto3 and covidct_core are installed there). Connection settings
come from the COVIDCT_S3_* variables of the chart's ConfigMap and Secret.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, cast

from covidct_core.storage import sha256_file

METADATA = "configs/metadata.json"


class BundleError(Exception):
    """The bundle is incomplete or does not match its checksums."""


class S3Client(Protocol):
    def get_paginator(self, operation_name: str) -> Any: ...

    def download_file(self, bucket: str, key: str, filename: str) -> None: ...


def list_keys(client: S3Client, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return sorted(k for k in keys if not k.endswith("/"))


def relative_path(key: str, prefix: str) -> PurePosixPath:
    rel = PurePosixPath(key[len(prefix) :])
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise BundleError(f"unsafe object key {key!r}")
    return rel


def download_bundle(client: S3Client, bucket: str, prefix: str, dest: Path) -> list[str]:
    """Download every object below ``prefix`` into ``dest``; return the relative paths."""
    if not prefix.endswith("/"):
        prefix += "/"
    keys = list_keys(client, bucket, prefix)
    if not keys:
        raise BundleError(f"no objects under s3://{bucket}/{prefix}")
    dest.mkdir(parents=True, exist_ok=True)
    fetched = []
    for key in keys:
        rel = relative_path(key, prefix)
        target = dest.joinpath(*rel.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
            tmp_name = tmp.name
        client.download_file(bucket, key, tmp_name)
        Path(tmp_name).replace(target)
        fetched.append(rel.as_posix())
    return fetched


def files_under(root: Path, sub: str) -> Iterable[str]:
    base = root / sub
    if not base.is_dir():
        return []
    return sorted(p.relative_to(root).as_posix() for p in base.rglob("*") if p.is_file())


def expected_checksums(meta: Any) -> dict[str, str]:
    """Relative path -> sha256 from the two forms the covidct bundles use.

    ``"sha256": {"models/model.ts": "<hex>", ...}`` and
    ``"weights": {"file": "models/model.ts", "sha256": "<hex>"}``.
    """
    expected: dict[str, str] = {}
    listed = meta.get("sha256") if isinstance(meta, dict) else None
    if isinstance(listed, dict):
        expected.update({str(k): str(v) for k, v in listed.items()})
    weights = meta.get("weights") if isinstance(meta, dict) else None
    if isinstance(weights, dict) and weights.get("file"):
        expected[str(weights["file"])] = str(weights.get("sha256") or "")
    if not expected:
        raise BundleError(f"{METADATA} lists no sha256 ('sha256' map or 'weights.sha256')")
    empty = sorted(path for path, digest in expected.items() if not digest)
    if empty:
        raise BundleError(f"{METADATA} has an empty sha256 for {', '.join(empty)}")
    return expected


def verify_bundle(root: Path) -> int:
    """Check the sha256 of every listed file; return how many were checked."""
    meta_path = root / METADATA
    if not meta_path.is_file():
        raise BundleError(f"{METADATA} is missing")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise BundleError(f"{METADATA} is not valid JSON") from e
    expected = expected_checksums(meta)
    unlisted = [p for p in files_under(root, "models") if p not in expected]
    if unlisted:
        raise BundleError(f"weights without a checksum: {', '.join(unlisted)}")
    for rel, digest in sorted(expected.items()):
        path = root / rel
        if not path.is_file():
            raise BundleError(f"listed file {rel} is missing")
        actual = sha256_file(path)
        if actual != digest.lower():
            raise BundleError(f"sha256 mismatch for {rel}: {actual} != {digest}")
    return len(expected)


def s3_client() -> S3Client:
    import boto3  # only needed in the container

    client = boto3.client(
        "s3",
        endpoint_url=os.environ["COVIDCT_S3_ENDPOINT"],
        aws_access_key_id=os.environ["COVIDCT_S3_ACCESS_KEY"],
        aws_secret_access_key=os.environ["COVIDCT_S3_SECRET_KEY"],
        region_name=os.environ.get("COVIDCT_S3_REGION", "us-east-1"),
    )
    return cast("S3Client", client)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--prefix", required=True, help="models/<name>/<version>/")
    parser.add_argument("--dest", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        fetched = download_bundle(s3_client(), args.bucket, args.prefix, args.dest)
        checked = verify_bundle(args.dest)
    except BundleError as e:
        sys.stderr.write(f"model bundle rejected: {e}\n")
        return 1
    sys.stdout.write(f"fetched {len(fetched)} files, verified {checked} checksums\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
