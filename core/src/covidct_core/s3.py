"""An ObjectStore over S3 (MinIO in production, SeaweedFS in tests)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from covidct_core.errors import ObjectNotFoundError, RetryableError, StorageError
from covidct_core.storage import (
    SHA256_METADATA_KEY,
    ObjectInfo,
    sha256_bytes,
    sha256_file,
    validate_key,
)

MULTIPART_THRESHOLD = 16 * 1024 * 1024
MULTIPART_CHUNK = 8 * 1024 * 1024
NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound"}
# a conditional PUT lost: the key exists (412), or another conditional write is in flight (409)
CONDITION_LOST_CODES = {"412", "PreconditionFailed", "409", "ConditionalRequestConflict"}


# connections kept per client: the stages fetch and index objects on up to this many threads
MAX_POOL_CONNECTIONS = 32


def make_s3_client(endpoint: str, access_key: str, secret_key: str, region: str) -> Any:
    """A boto3 S3 client with path-style addressing, standard retries with backoff and a
    connection pool for concurrent requests (boto3 clients are thread-safe).

    Bodies are not SHA-256-signed (``UNSIGNED-PAYLOAD``; botocore otherwise hashes every
    body on plain-HTTP endpoints, a second SHA-256 beside the one :class:`S3Store` records):
    the CRC32 checksum botocore sends with each upload still lets the server reject a body
    damaged in transit, and every reader checks the recorded sha256."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        config=Config(
            s3={"addressing_style": "path", "payload_signing_enabled": False},
            retries={"max_attempts": 5, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
            max_pool_connections=MAX_POOL_CONNECTIONS,
        ),
    )


def _is_not_found(error: ClientError) -> bool:
    return str(error.response.get("Error", {}).get("Code")) in NOT_FOUND_CODES


class S3Store:
    """Object store over one bucket. sha256 is recorded in the object's user metadata."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        multipart_chunk: int = MULTIPART_CHUNK,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunk,
            use_threads=True,
            max_concurrency=4,
        )

    def ensure_bucket(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            try:
                self.client.create_bucket(Bucket=self.bucket)
            except ClientError as e:
                code = str(e.response.get("Error", {}).get("Code"))
                if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise StorageError(f"cannot create bucket {self.bucket}: {code}") from e

    def ping(self) -> bool:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError):
            return False
        return True

    def put_bytes(
        self, key: str, data: bytes, metadata: dict[str, str] | None = None
    ) -> ObjectInfo:
        validate_key(key)
        sha = sha256_bytes(data)
        meta = {**(metadata or {}), SHA256_METADATA_KEY: sha}
        try:
            response = self.client.put_object(Bucket=self.bucket, Key=key, Body=data, Metadata=meta)
        except (ClientError, BotoCoreError) as e:
            raise RetryableError(f"put {key} failed: {e}") from e
        return ObjectInfo(key, len(data), sha, str(response.get("ETag", "")).strip('"'), meta)

    def put_bytes_if_absent(
        self, key: str, data: bytes, metadata: dict[str, str] | None = None
    ) -> ObjectInfo | None:
        """Create ``key`` only when it does not exist (conditional PUT ``If-None-Match: *``,
        supported by AWS S3, MinIO and SeaweedFS); None when it already existed."""
        validate_key(key)
        sha = sha256_bytes(data)
        meta = {**(metadata or {}), SHA256_METADATA_KEY: sha}
        try:
            response = self.client.put_object(
                Bucket=self.bucket, Key=key, Body=data, Metadata=meta, IfNoneMatch="*"
            )
        except ClientError as e:
            if str(e.response.get("Error", {}).get("Code")) in CONDITION_LOST_CODES:
                return None
            raise RetryableError(f"conditional put {key} failed: {e}") from e
        except BotoCoreError as e:
            raise RetryableError(f"conditional put {key} failed: {e}") from e
        return ObjectInfo(key, len(data), sha, str(response.get("ETag", "")).strip('"'), meta)

    def put_file(self, key: str, path: Path, metadata: dict[str, str] | None = None) -> ObjectInfo:
        """Upload a file, streamed in multipart chunks above the threshold."""
        validate_key(key)
        sha = sha256_file(path)
        meta = {**(metadata or {}), SHA256_METADATA_KEY: sha}
        try:
            self.client.upload_file(
                str(path), self.bucket, key, ExtraArgs={"Metadata": meta}, Config=self.transfer
            )
        except (ClientError, BotoCoreError) as e:
            raise RetryableError(f"upload {key} failed: {e}") from e
        return ObjectInfo(key, path.stat().st_size, sha, None, meta)

    def get_bytes(self, key: str) -> bytes:
        validate_key(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            return bytes(response["Body"].read())
        except ClientError as e:
            if _is_not_found(e):
                raise ObjectNotFoundError(f"no object {key!r} in {self.bucket}") from e
            raise RetryableError(f"get {key} failed: {e}") from e
        except BotoCoreError as e:
            raise RetryableError(f"get {key} failed: {e}") from e

    def get_range(self, key: str, start: int, length: int) -> bytes:
        validate_key(key)
        if length <= 0:
            return b""
        try:
            response = self.client.get_object(
                Bucket=self.bucket, Key=key, Range=f"bytes={start}-{start + length - 1}"
            )
            return bytes(response["Body"].read())
        except ClientError as e:
            if _is_not_found(e):
                raise ObjectNotFoundError(f"no object {key!r} in {self.bucket}") from e
            if str(e.response.get("Error", {}).get("Code")) == "InvalidRange":
                return b""
            raise RetryableError(f"ranged get {key} failed: {e}") from e
        except BotoCoreError as e:
            raise RetryableError(f"ranged get {key} failed: {e}") from e

    def download_file(self, key: str, path: Path) -> ObjectInfo:
        info = self.head(key)
        if info is None:
            raise ObjectNotFoundError(f"no object {key!r} in {self.bucket}")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client.download_file(self.bucket, key, str(path), Config=self.transfer)
        except (ClientError, BotoCoreError) as e:
            raise RetryableError(f"download {key} failed: {e}") from e
        return info

    def head(self, key: str) -> ObjectInfo | None:
        validate_key(key)
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as e:
            if _is_not_found(e):
                return None
            raise RetryableError(f"head {key} failed: {e}") from e
        except BotoCoreError as e:
            raise RetryableError(f"head {key} failed: {e}") from e
        meta = {str(k).lower(): str(v) for k, v in (response.get("Metadata") or {}).items()}
        return ObjectInfo(
            key,
            int(response.get("ContentLength", 0)),
            meta.get(SHA256_METADATA_KEY),
            str(response.get("ETag", "")).strip('"'),
            meta,
        )

    def list(self, prefix: str = "", start_after: str = "") -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if start_after:
            kwargs["StartAfter"] = start_after
        try:
            for page in paginator.paginate(**kwargs):
                for item in page.get("Contents", []):
                    yield ObjectInfo(
                        str(item["Key"]),
                        int(item.get("Size", 0)),
                        None,
                        str(item.get("ETag", "")).strip('"'),
                    )
        except (ClientError, BotoCoreError) as e:
            raise RetryableError(f"list {prefix!r} failed: {e}") from e

    def delete(self, key: str) -> None:
        validate_key(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as e:
            raise RetryableError(f"delete {key} failed: {e}") from e
