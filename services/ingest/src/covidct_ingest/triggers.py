"""Turning the outside world's signals into object-event messages.

- MinIO bucket notifications (AMQP): :func:`decode_minio_event`.
- Bucket polling for S3 servers without notifications: :class:`BucketPoller`, resumable
  because every object it has announced is recorded by a marker object in the work bucket.
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import structlog

from covidct_core.errors import CovidCtError, MessageValidationError
from covidct_core.messages import OBJECT_EVENT, Message, envelope, new_message_id
from covidct_core.storage import ObjectInfo, ObjectStore

log = structlog.get_logger()

CREATED_PREFIX = "s3:ObjectCreated:"
IGNORED_KEY_SUFFIXES = ("/",)
POLL_MARKER_PREFIX = "state/poll"


def object_event(objects: Iterable[dict[str, object]], source: str) -> Message:
    return envelope(
        OBJECT_EVENT,
        objects=list(objects),
        source=source,
        correlation_id=new_message_id(),
    )


def decode_minio_event(body: bytes) -> Message | None:
    """Convert one MinIO notification (the JSON MinIO publishes over AMQP) to an object-event.

    Returns None for events that need no work (removals, folder markers). Raises
    MessageValidationError for a body that is not a MinIO event.
    """
    try:
        event = json.loads(body)
        records = event["Records"]
    except (ValueError, KeyError, TypeError) as e:
        raise MessageValidationError(f"not a MinIO bucket event: {e}") from e
    objects: list[dict[str, object]] = []
    for record in records:
        try:
            name = str(record["eventName"])
            bucket = str(record["s3"]["bucket"]["name"])
            obj = record["s3"]["object"]
            key = urllib.parse.unquote_plus(str(obj["key"]))
        except (KeyError, TypeError) as e:
            raise MessageValidationError(f"MinIO record without bucket/object: {e}") from e
        if not name.startswith(CREATED_PREFIX) or key.endswith(IGNORED_KEY_SUFFIXES):
            continue
        item: dict[str, object] = {"bucket": bucket, "key": key, "size": int(obj.get("size", 0))}
        if obj.get("eTag"):
            item["etag"] = str(obj["eTag"]).strip('"')
        if record.get("eventTime"):
            item["event_time"] = str(record["eventTime"])
        objects.append(item)
    if not objects:
        return None
    return object_event(objects, "minio")


def poll_marker_key(bucket: str, info: ObjectInfo) -> str:
    """Marker recording that ``info`` (key and ETag) has been announced."""
    token = base64.urlsafe_b64encode(f"{info.key}\n{info.etag or ''}".encode()).decode()
    return f"{POLL_MARKER_PREFIX}/{bucket}/{token.rstrip('=')}"


@dataclass
class BucketPoller:
    """Announces new objects of an input bucket, once each, across restarts.

    ``publish`` must return only after the broker confirmed the message; the marker is
    written after that, so a crash in between repeats an announcement (harmless: indexing
    is idempotent) and never loses one.
    """

    input_store: ObjectStore
    work_store: ObjectStore
    publish: Callable[[Message], None]
    prefix: str = ""
    batch_size: int = 1

    def _announced(self) -> set[str]:
        marker_prefix = f"{POLL_MARKER_PREFIX}/{self.input_store.bucket}/"
        return {info.key for info in self.work_store.list(marker_prefix)}

    def poll_once(self) -> int:
        """List the bucket, announce every object not seen before; return how many."""
        announced = self._announced()
        count = 0
        for info in self.input_store.list(self.prefix):
            if info.key.endswith("/"):
                continue
            marker = poll_marker_key(self.input_store.bucket, info)
            if marker in announced:
                continue
            item: dict[str, object] = {
                "bucket": self.input_store.bucket,
                "key": info.key,
                "size": info.size,
            }
            if info.etag:
                item["etag"] = info.etag
            self.publish(object_event([item], "poll"))
            self.work_store.put_bytes(marker, b"")
            count += 1
        if count:
            log.info("poll_announced", stage="ingest", objects=count)
        return count

    def run(self, stop: threading.Event, interval: float) -> None:
        while not stop.is_set():
            try:
                self.poll_once()
            except CovidCtError as e:
                log.warning("poll_failed", stage="ingest", error=str(e))
            stop.wait(interval)
