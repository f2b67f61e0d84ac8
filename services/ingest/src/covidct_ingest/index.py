"""The per-instance index in the work bucket: ``index/<series_key>/<instance_key>.json``.

Indexing reads only the header (a ranged GET, the whole object only when needed), keeps no
patient identifiers, and is idempotent: the same object indexed twice changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from covidct_core.errors import ObjectNotFoundError, PermanentError
from covidct_core.messages import utc_now_iso
from covidct_core.storage import ObjectStore, put_bytes_if_absent
from covidct_ingest.grouping import series_key_of
from covidct_ingest.headers import (
    PREFIX_SIZE,
    InstanceHeader,
    header_from_dict,
    header_to_dict,
    instance_key,
    parse_header,
    parse_header_prefix,
)
from covidct_ingest.io_pool import SEQUENTIAL, IoPool

INDEX_PREFIX = "index"


@dataclass(frozen=True)
class SourceObject:
    """Where an instance's bytes live."""

    bucket: str
    key: str
    size: int
    etag: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "key": self.key, "size": self.size, "etag": self.etag}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceObject:
        return cls(str(data["bucket"]), str(data["key"]), int(data["size"]), str(data["etag"]))


@dataclass(frozen=True)
class IndexEntry:
    """One indexed instance."""

    series_key: str
    instance_key: str
    header: InstanceHeader
    source: SourceObject
    indexed_at: str
    generation: str  # sortable: nanosecond time + instance key; the largest is the newest

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "series_key": self.series_key,
                "instance_key": self.instance_key,
                "header": header_to_dict(self.header),
                "source": self.source.to_dict(),
                "indexed_at": self.indexed_at,
                "generation": self.generation,
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> IndexEntry:
        raw = json.loads(data)
        return cls(
            raw["series_key"],
            raw["instance_key"],
            header_from_dict(raw["header"]),
            SourceObject.from_dict(raw["source"]),
            raw["indexed_at"],
            raw["generation"],
        )


def read_prefix(store: ObjectStore, source: SourceObject) -> bytes:
    """The first 64 KiB of an object (one ranged GET): enough for most headers, and for
    telling a zip archive from a DICOM instance."""
    if source.size == 0:
        raise PermanentError("CORRUPT_FILE", "zero-length object", [source.key])
    return store.get_range(source.key, 0, PREFIX_SIZE)


def read_header(
    store: ObjectStore, source: SourceObject, prefix: bytes | None = None
) -> InstanceHeader:
    """Header of one object from its prefix (read here unless given), the whole object if
    the prefix is not enough."""
    if prefix is None:
        prefix = read_prefix(store, source)
    if len(prefix) < source.size:
        header = parse_header_prefix(prefix, source.size)
        if header is not None:
            return header
        prefix = store.get_bytes(source.key)
    return parse_header(prefix)


def _entry_key(series_key: str, key: str) -> str:
    safe = key.replace("/", "_")
    return f"{INDEX_PREFIX}/{series_key}/{safe}.json"


def index_instance(
    work: ObjectStore, header: InstanceHeader, source: SourceObject
) -> IndexEntry | None:
    """Record ``header``; return the entry, or None when this exact object was already indexed
    (also by a concurrent replica: entries are created, never overwritten).

    An instance key seen before with different content (another ETag or size) is kept as a
    variant ``<instance>~<etag>`` so that assembly can report the conflict.
    """
    series_key, _derived = series_key_of(header)
    inst_key = instance_key(header)
    entry = _new_entry(series_key, inst_key, header, source)
    key = _entry_key(series_key, inst_key)
    # create first (one request for a new instance); conditional, so that when two replicas
    # index the same object at once one entry (and one series check) wins
    if _create(work, key, entry):
        return entry
    try:
        previous = IndexEntry.from_json(work.get_bytes(key))
    except ObjectNotFoundError:
        return None  # deleted in between (a cleanup): nothing to add to
    same = (previous.source.etag, previous.source.size) == (source.etag, source.size)
    if same or previous.source == source:
        return None
    variant = hashlib.sha256(f"{source.etag}:{source.size}".encode()).hexdigest()[:12]
    if _create(work, _entry_key(series_key, f"{inst_key}~{variant}"), entry):
        return entry
    return None


def _new_entry(
    series_key: str, inst_key: str, header: InstanceHeader, source: SourceObject
) -> IndexEntry:
    return IndexEntry(
        series_key=series_key,
        instance_key=inst_key,
        header=header,
        source=source,
        indexed_at=utc_now_iso(),
        generation=f"{time.time_ns():020d}-{inst_key}",
    )


def _create(work: ObjectStore, key: str, entry: IndexEntry) -> bool:
    created = put_bytes_if_absent(work, key, entry.to_json(), {"content-type": "application/json"})
    return created is not None


def read_series_index(
    work: ObjectStore, series_key: str, pool: IoPool = SEQUENTIAL
) -> list[IndexEntry]:
    """Every entry of a series, in key order (read on ``pool``'s threads)."""
    keys = [info.key for info in work.list(f"{INDEX_PREFIX}/{series_key}/")]
    return [IndexEntry.from_json(data) for data in pool.fetch(work, keys)]
