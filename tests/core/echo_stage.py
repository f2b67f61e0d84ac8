"""A small stage for testing the worker shell against the real broker and S3.

It behaves like a segment stage: consumes series-ready, writes ``out/<job_id>.txt`` and
publishes mask-ready. The series UID chooses a behaviour: ``permanent`` raises a permanent
error, ``retry`` always raises a retryable one, ``slow`` sleeps before writing (so a test
can kill the process in the middle of the handler).
Run as a process: ``python -m tests.core.echo_stage`` with the usual COVIDCT_* variables.
"""

from __future__ import annotations

import os
import sys
import time
import uuid

from covidct_core.errors import PermanentError, RetryableError
from covidct_core.messages import (
    SERIES_READY,
    Message,
    ModelRef,
    ObjectRef,
    SegmentationSummary,
    mask_ready,
)
from covidct_core.stage import Outbound, completion_record_key
from covidct_core.storage import ObjectStore

MODEL = ModelRef("echo", "1", "b" * 64)


class EchoStage:
    name = "segment"
    accepts = (SERIES_READY,)

    def __init__(self, store: ObjectStore, slow_seconds: float = 0.0) -> None:
        self.store = store
        self.slow_seconds = slow_seconds

    def completion_key(self, message: Message) -> str:
        return completion_record_key("segment", message["job_id"], MODEL.tag)

    def handle(self, message: Message) -> list[Outbound]:
        series = message["series_instance_uid"]
        job_id = message["job_id"]
        self.store.put_bytes(f"calls/{job_id}/{uuid.uuid4().hex}", b"started")
        if series == "permanent":
            raise PermanentError("NO_LUNG_FOUND", "no lung in this test volume", ["v.mha"])
        if series == "retry":
            raise RetryableError("storage hiccup")
        if series == "slow":
            time.sleep(self.slow_seconds)
        info = self.store.put_bytes(f"out/{job_id}.txt", job_id.encode())
        ref = ObjectRef(self.store.bucket, info.key, info.size, info.sha256 or "")
        self.store.put_bytes(f"finished/{job_id}/{uuid.uuid4().hex}", b"done")
        summary = SegmentationSummary(1000.0, None)
        return [Outbound("classify.request", mask_ready(message, ref, MODEL, summary, {}))]


def main() -> int:
    """Run the echo stage through the same shell as the real workers."""
    from covidct_core.entrypoint import BuiltStage, WorkerContext, serve_stage

    def build(context: WorkerContext) -> BuiltStage:
        slow = float(context.environ.get("ECHO_SLOW_SECONDS", "0"))
        return BuiltStage(EchoStage(context.store, slow))

    return serve_stage("segment", build, os.environ)


if __name__ == "__main__":
    sys.exit(main())
