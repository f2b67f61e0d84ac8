"""An ObjectStore wrapper that counts bytes read and written for one stage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from covidct_core.metrics import StageMetrics
from covidct_core.storage import ObjectInfo, ObjectStore, put_bytes_if_absent


class MeteredStore:
    """Delegates to ``inner`` and adds to the stage's bytes read/written counters."""

    def __init__(self, inner: ObjectStore, metrics: StageMetrics, stage: str) -> None:
        self.inner = inner
        self.bucket = inner.bucket
        self._read = metrics.bytes_read.labels(stage=stage)
        self._written = metrics.bytes_written.labels(stage=stage)

    def put_bytes(
        self, key: str, data: bytes, metadata: dict[str, str] | None = None
    ) -> ObjectInfo:
        info = self.inner.put_bytes(key, data, metadata)
        self._written.inc(info.size)
        return info

    def put_bytes_if_absent(
        self, key: str, data: bytes, metadata: dict[str, str] | None = None
    ) -> ObjectInfo | None:
        info = put_bytes_if_absent(self.inner, key, data, metadata)
        if info is not None:
            self._written.inc(info.size)
        return info

    def put_file(self, key: str, path: Path, metadata: dict[str, str] | None = None) -> ObjectInfo:
        info = self.inner.put_file(key, path, metadata)
        self._written.inc(info.size)
        return info

    def get_bytes(self, key: str) -> bytes:
        data = self.inner.get_bytes(key)
        self._read.inc(len(data))
        return data

    def get_range(self, key: str, start: int, length: int) -> bytes:
        data = self.inner.get_range(key, start, length)
        self._read.inc(len(data))
        return data

    def download_file(self, key: str, path: Path) -> ObjectInfo:
        info = self.inner.download_file(key, path)
        self._read.inc(info.size)
        return info

    def head(self, key: str) -> ObjectInfo | None:
        return self.inner.head(key)

    def list(self, prefix: str = "", start_after: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix, start_after)

    def delete(self, key: str) -> None:
        self.inner.delete(key)
