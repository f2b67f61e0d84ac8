"""A small stage for testing the worker shell against the real broker and S3.

It behaves like a segment stage: consumes series-ready, writes ``out/<job_id>.txt`` and
publishes mask-ready. The series UID chooses a behaviour: ``permanent`` raises a permanent
error, ``retry`` always raises a retryable one, ``slow`` sleeps before writing (so a test
can kill the process in the middle of the handler).
Run as a process: ``python -m tests.core.echo_stage`` with the usual COVIDCT_* variables.
"""

from __future__ import annotations

import os
import signal
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
    from covidct_core.config import read_worker_settings
    from covidct_core.logs import configure_logging
    from covidct_core.metrics import create_metrics
    from covidct_core.s3 import S3Store, make_s3_client
    from covidct_core.worker import Worker, WorkerOptions

    configure_logging("INFO")
    settings = read_worker_settings(os.environ)
    client = make_s3_client(
        settings.storage.endpoint,
        settings.storage.access_key,
        settings.storage.secret_key,
        settings.storage.region,
    )
    store = S3Store(client, settings.storage.work_bucket)
    stage = EchoStage(store, float(os.environ.get("ECHO_SLOW_SECONDS", "0")))
    worker = Worker(
        stage,
        store,
        create_metrics(),
        WorkerOptions(
            amqp_url=settings.broker.amqp_url,
            exchange=settings.broker.exchange,
            prefetch=settings.broker.prefetch,
            retry_delays=settings.broker.retry_delays,
            max_backoff=2.0,
        ),
    )
    signal.signal(signal.SIGTERM, lambda *_: worker.request_stop())
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
