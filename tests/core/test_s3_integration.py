"""S3Store against the real SeaweedFS server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from covidct_core.errors import ObjectNotFoundError
from covidct_core.s3 import S3Store
from covidct_core.storage import sha256_bytes, sha256_file

pytestmark = pytest.mark.integration


def test_put_get_head_list_delete_with_sha256(s3_store: S3Store) -> None:
    data = b"covidct" * 1000
    info = s3_store.put_bytes("volumes/j1/image.mha", data, {"stage": "ingest"})
    assert info.sha256 == sha256_bytes(data)
    head = s3_store.head("volumes/j1/image.mha")
    assert head is not None
    assert head.size == len(data)
    assert head.sha256 == sha256_bytes(data)
    assert head.metadata["stage"] == "ingest"
    assert s3_store.get_bytes("volumes/j1/image.mha") == data
    assert s3_store.get_range("volumes/j1/image.mha", 7, 7) == b"covidct"
    s3_store.put_bytes("volumes/j2/image.mha", b"x")
    s3_store.put_bytes("masks/j1/lung.mha", b"y")
    assert [o.key for o in s3_store.list("volumes/")] == [
        "volumes/j1/image.mha",
        "volumes/j2/image.mha",
    ]
    assert s3_store.head("volumes/missing") is None
    s3_store.delete("volumes/j2/image.mha")
    with pytest.raises(ObjectNotFoundError):
        s3_store.get_bytes("volumes/j2/image.mha")


def test_listing_pages_past_one_page(s3_client: Any, s3_bucket: str) -> None:
    store = S3Store(s3_client, s3_bucket)
    for i in range(1005):
        s3_client.put_object(Bucket=s3_bucket, Key=f"many/{i:05d}", Body=b"")
    keys = [o.key for o in store.list("many/")]
    assert len(keys) == 1005
    assert keys == sorted(keys)
    assert [o.key for o in store.list("many/", start_after="many/01000")] == [
        f"many/{i:05d}" for i in range(1001, 1005)
    ]


def test_multipart_upload_above_the_part_size(
    s3_client: Any, s3_bucket: str, tmp_path: Path
) -> None:
    part = 5 * 1024 * 1024
    store = S3Store(s3_client, s3_bucket, multipart_threshold=part, multipart_chunk=part)
    source = tmp_path / "big.bin"
    source.write_bytes(bytes(range(256)) * (12 * 1024 * 1024 // 256 + 7))
    info = store.put_file("big/volume.mha", source)
    head = s3_client.head_object(Bucket=s3_bucket, Key="big/volume.mha")
    assert "-" in head["ETag"], "expected a multipart ETag (md5-of-parts with a part count)"
    assert info.sha256 == sha256_file(source)
    stored = store.head("big/volume.mha")
    assert stored is not None and stored.sha256 == sha256_file(source)
    target = tmp_path / "back.bin"
    store.download_file("big/volume.mha", target)
    assert sha256_file(target) == sha256_file(source)


def test_uploads_are_unsigned_but_checksummed(s3_client: Any, s3_bucket: str) -> None:
    """Bodies go as UNSIGNED-PAYLOAD (no second SHA-256 of every volume), with a CRC32 the
    server checks: a body that does not match its checksum is refused."""
    from botocore.exceptions import ClientError

    sent: dict[str, Any] = {}

    def record(request: Any, **_: Any) -> None:
        sent.update(request.headers)

    s3_client.meta.events.register("before-send.s3.PutObject", record)
    try:
        s3_client.put_object(Bucket=s3_bucket, Key="crc/ok", Body=b"voxels" * 1000)
    finally:
        s3_client.meta.events.unregister("before-send.s3.PutObject", record)
    assert sent["X-Amz-Content-SHA256"] == b"UNSIGNED-PAYLOAD"
    assert "x-amz-checksum-crc32" in sent
    with pytest.raises(ClientError):
        s3_client.put_object(
            Bucket=s3_bucket, Key="crc/bad", Body=b"voxels" * 1000, ChecksumCRC32="AAAAAA=="
        )
    assert S3Store(s3_client, s3_bucket).head("crc/bad") is None
