"""A small object-store interface with a local-directory backend.

The S3 backend lives in :mod:`covidct_core.s3`. Both record the sha256 of every object
written, so that messages can carry it and readers can verify it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol, runtime_checkable

from covidct_core.errors import InvalidKeyError, ObjectNotFoundError

SHA256_METADATA_KEY = "sha256"
CHUNK_SIZE = 1024 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows about one object."""

    key: str
    size: int
    sha256: str | None = None
    etag: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


class ObjectStore(Protocol):
    """The operations every stage needs, over S3 or a local directory."""

    bucket: str

    def put_bytes(
        self, key: str, data: bytes, metadata: dict[str, str] | None = None
    ) -> ObjectInfo: ...

    def put_file(
        self, key: str, path: Path, metadata: dict[str, str] | None = None
    ) -> ObjectInfo: ...

    def get_bytes(self, key: str) -> bytes: ...

    def get_range(self, key: str, start: int, length: int) -> bytes: ...

    def download_file(self, key: str, path: Path) -> ObjectInfo: ...

    def head(self, key: str) -> ObjectInfo | None: ...

    def list(self, prefix: str = "", start_after: str = "") -> Iterator[ObjectInfo]: ...

    def delete(self, key: str) -> None: ...


@runtime_checkable
class SupportsPutIfAbsent(Protocol):
    """A store that can create an object atomically only when its key is still free."""

    def put_bytes_if_absent(
        self, key: str, data: bytes, metadata: dict[str, str] | None = None
    ) -> ObjectInfo | None: ...


def put_bytes_if_absent(
    store: ObjectStore, key: str, data: bytes, metadata: dict[str, str] | None = None
) -> ObjectInfo | None:
    """Create ``key`` only when no object exists there; None when one already did.

    Atomic where the store supports it (S3 conditional PUT ``If-None-Match: *``, LocalStore);
    other stores fall back to head-then-put, which two concurrent writers can both pass.
    """
    if isinstance(store, SupportsPutIfAbsent):
        return store.put_bytes_if_absent(key, data, metadata)
    if store.head(key) is not None:
        return None
    return store.put_bytes(key, data, metadata)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_SIZE), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_stream(stream: BinaryIO) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: stream.read(CHUNK_SIZE), b""):
        digest.update(chunk)
    return digest.hexdigest()


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative POSIX key, else raise InvalidKeyError."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise InvalidKeyError(f"invalid object key {key!r}")
    parts = key.split("/")
    if any(part in ("..", ".", "") for part in parts):
        raise InvalidKeyError(f"object key {key!r} escapes the store root or is a folder")
    return key


def create_temp_file(directory: Path, prefix: str) -> tuple[int, str]:
    """A new, empty file in ``directory`` opened for writing, like ``tempfile.mkstemp`` but
    with the process umask's permissions (mkstemp makes 0600 files, and the store's files
    are renamed into place as results people read)."""
    for _ in range(100):
        name = directory / f"{prefix}{secrets.token_hex(8)}"
        try:
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), str(name)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {directory}")


def replace_file(path: Path, data: bytes, temp_prefix: str = ".tmp-") -> None:
    """Write ``data`` to ``path`` atomically: into a temporary file beside it, then renamed
    over it, so that a reader sees the old content or the new, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = create_temp_file(path.parent, temp_prefix)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


class LocalStore:
    """An :class:`ObjectStore` over a local directory (the embedded single-machine mode).

    Metadata lives in a sidecar ``<key>.meta.json`` under a hidden ``.meta`` tree so that
    listing sees only objects. Writes go to a temporary file and are renamed into place.
    """

    def __init__(self, root: Path, bucket: str = "local") -> None:
        self.root = root.resolve()
        self.bucket = bucket
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        validate_key(key)
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise InvalidKeyError(f"object key {key!r} escapes the store root")
        if PurePosixPath(key).parts[0] == ".meta":
            raise InvalidKeyError(f"object key {key!r} uses the reserved .meta prefix")
        return path

    def _meta_path(self, key: str) -> Path:
        return self.root / ".meta" / (key + ".json")

    def _write_meta(self, key: str, info: ObjectInfo) -> None:
        """Replace the sidecar atomically: a concurrent :meth:`head` (a listing) never reads
        a half-written one."""
        sidecar = json.dumps({"sha256": info.sha256, "metadata": info.metadata})
        replace_file(self._meta_path(key), sidecar.encode())

    def put_bytes(
        self, key: str, data: bytes, metadata: dict[str, str] | None = None
    ) -> ObjectInfo:
        replace_file(self._path(key), data)
        info = ObjectInfo(key, len(data), sha256_bytes(data), None, dict(metadata or {}))
        self._write_meta(key, info)
        return info

    def put_bytes_if_absent(
        self, key: str, data: bytes, metadata: dict[str, str] | None = None
    ) -> ObjectInfo | None:
        """Create ``key`` atomically (a hard link fails when the name exists)."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = create_temp_file(path.parent, ".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.link(tmp, path)
        except FileExistsError:
            return None
        finally:
            Path(tmp).unlink()
        info = ObjectInfo(key, len(data), sha256_bytes(data), None, dict(metadata or {}))
        self._write_meta(key, info)
        return info

    def put_file(self, key: str, path: Path, metadata: dict[str, str] | None = None) -> ObjectInfo:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = create_temp_file(target.parent, ".tmp-")
        os.close(fd)
        shutil.copyfile(path, tmp)
        os.replace(tmp, target)
        info = ObjectInfo(
            key, target.stat().st_size, sha256_file(target), None, dict(metadata or {})
        )
        self._write_meta(key, info)
        return info

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError as e:
            raise ObjectNotFoundError(f"no object {key!r}") from e

    def get_range(self, key: str, start: int, length: int) -> bytes:
        path = self._path(key)
        try:
            with path.open("rb") as handle:
                handle.seek(start)
                return handle.read(length)
        except FileNotFoundError as e:
            raise ObjectNotFoundError(f"no object {key!r}") from e

    def download_file(self, key: str, path: Path) -> ObjectInfo:
        source = self._path(key)
        if not source.is_file():
            raise ObjectNotFoundError(f"no object {key!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, path)
        info = self.head(key)
        if info is None:
            raise ObjectNotFoundError(f"no object {key!r}")
        return info

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        if not path.is_file():
            return None
        sha: str | None = None
        metadata: dict[str, str] = {}
        meta_path = self._meta_path(key)
        if meta_path.is_file():
            stored = json.loads(meta_path.read_text())
            sha = stored.get("sha256")
            metadata = dict(stored.get("metadata") or {})
        return ObjectInfo(key, path.stat().st_size, sha, None, metadata)

    def list(self, prefix: str = "", start_after: str = "") -> Iterator[ObjectInfo]:
        keys: list[str] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            if rel_dir == ".meta" or rel_dir.startswith(".meta/"):
                dirnames[:] = []
                continue
            for name in filenames:
                if name.startswith(".tmp-"):
                    continue
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if key.startswith(prefix) and key > start_after:
                    keys.append(key)
        for key in sorted(keys):
            info = self.head(key)
            if info is not None:
                yield info

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        self._meta_path(key).unlink(missing_ok=True)
