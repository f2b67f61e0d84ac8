from __future__ import annotations

import json
from pathlib import Path

import pytest

from covidct_core.errors import MessageValidationError
from covidct_core.messages import OBJECT_EVENT, Message, validate_message
from covidct_core.storage import LocalStore
from covidct_ingest.triggers import BucketPoller, decode_minio_event
from tests.pipeline.test_ingest_worker import minio_event


def test_minio_event_becomes_an_object_event_with_the_decoded_key() -> None:
    message = decode_minio_event(minio_event("input", "study 1/a b+c.dcm", 1234))
    assert message is not None
    validate_message(message, OBJECT_EVENT)
    assert message["source"] == "minio"
    assert message["objects"] == [
        {
            "bucket": "input",
            "key": "study 1/a b+c.dcm",
            "size": 1234,
            "etag": "d41d8cd98f00b204e9800998ecf8427e",
            "event_time": "2026-12-04T10:00:00.000Z",
        }
    ]


def test_minio_removal_and_folder_events_need_no_work() -> None:
    removal = json.loads(minio_event("input", "a.dcm", 1))
    removal["Records"][0]["eventName"] = "s3:ObjectRemoved:Delete"
    assert decode_minio_event(json.dumps(removal).encode()) is None
    assert decode_minio_event(minio_event("input", "folder/", 0)) is None


@pytest.mark.parametrize("body", [b"nope", b"{}", b'{"Records": [{"eventName": "x"}]}'])
def test_non_minio_bodies_are_invalid(body: bytes) -> None:
    with pytest.raises(MessageValidationError):
        decode_minio_event(body)


def test_poller_announces_each_object_once_across_restarts(tmp_path: Path) -> None:
    inbox = LocalStore(tmp_path / "in", bucket="input")
    work = LocalStore(tmp_path / "work", bucket="work")
    published: list[Message] = []
    for name in ("a/1", "a/2", "b/3"):
        inbox.put_bytes(name, b"x")
    assert BucketPoller(inbox, work, published.append).poll_once() == 3
    # a new poller (a restarted process) remembers nothing in memory, yet repeats nothing
    restarted = BucketPoller(inbox, work, published.append)
    assert restarted.poll_once() == 0
    inbox.put_bytes("b/4", b"y")
    assert restarted.poll_once() == 1
    keys = [m["objects"][0]["key"] for m in published]
    assert keys == ["a/1", "a/2", "b/3", "b/4"]


def test_poller_marks_an_object_only_after_it_was_published(tmp_path: Path) -> None:
    inbox = LocalStore(tmp_path / "in", bucket="input")
    work = LocalStore(tmp_path / "work", bucket="work")
    inbox.put_bytes("a/1", b"x")

    def broken(_message: Message) -> None:
        raise MessageValidationError("broker down")

    with pytest.raises(MessageValidationError):
        BucketPoller(inbox, work, broken).poll_once()
    published: list[Message] = []
    assert BucketPoller(inbox, work, published.append).poll_once() == 1
