"""Pipeline overhead: the distributed pipeline vs the bare stage computations, same run.

Starts the three workers as processes against the local RabbitMQ and SeaweedFS, warms them
up (model loading is excluded), then for each round uploads a real series, publishes a
manifest (as ``covidct submit`` does) and waits for result-ready. The baseline is the sum of
the bare computations of that very job: the compute timings the workers measure inside their
handlers (segmentation pre/inference/post/QA, classification, metrics, overview image; no
reads, writes or messaging) plus the DICOM conversion timed here on the same files.
Everything else in the end-to-end latency is the pipeline's overhead. ``--in-process`` also
times all stages in this process for the record (on this machine that is slower than inside
the workers, so it is not used as the baseline).

Prints ``pipeline_overhead_ratio: X`` (median end-to-end / median bare sum; target <= 1.10)
and the absolute overhead in ms per series; for every round also when each message of the job
was published (a tap queue bound to the exchange) and the per-stage timings, which show where
the overhead lies. The run deletes its queues, exchanges and buckets at the end.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from covidct_core.allocator import retain_freed_memory
from covidct_core.broker import ConfirmedPublisher
from covidct_core.s3 import S3Store, make_s3_client
from covidct_core.topology import declare_topology, delete_topology

RETRY_DELAYS = (10.0, 60.0, 300.0)
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SAMPLES = Path(os.environ.get("COVIDCT_SAMPLES", ROOT.parent / "shared" / "data"))
AMQP = os.environ.get("COVIDCT_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
S3 = {
    "endpoint": os.environ.get("COVIDCT_S3_ENDPOINT", "http://127.0.0.1:8333"),
    "access_key": os.environ.get("COVIDCT_S3_ACCESS_KEY", "covidct"),
    "secret_key": os.environ.get("COVIDCT_S3_SECRET_KEY", "covidct-secret"),
}


def series_folder() -> Path:
    root = SAMPLES / "tcia-lung-pet-ct-dx"
    return sorted({p.parent for p in root.rglob("*.dcm") if "A0002" in str(p)})[0]


def bare_seconds(folder: Path) -> float:
    """The stage computations alone, in this process, on local files."""
    from covidct_classify.loading import load_classifier
    from covidct_classify.metrics import lung_metrics
    from covidct_classify.overview import render_overview
    from covidct_ingest.convert import convert_series
    from covidct_segment.segmenters import build_segmenter

    segmenter = build_segmenter("model", None, None, "cpu")
    classifier = load_classifier(None, None, "cpu")
    instances = [(p.name, p.read_bytes()) for p in sorted(folder.glob("*.dcm"))]
    ticks = [time.perf_counter()]
    volume = convert_series(instances).volume
    ticks.append(time.perf_counter())
    mask = segmenter.segment(volume).mask > 0
    ticks.append(time.perf_counter())
    classifier.predict(volume.array, mask, volume.spacing)
    lung_metrics(volume.array, mask, volume.spacing)
    render_overview(volume.array, mask, volume.spacing, volume.direction, ["bench"])
    ticks.append(time.perf_counter())
    parts = [round(b - a, 2) for a, b in itertools.pairwise(ticks)]
    print(f"bare: {ticks[-1] - ticks[0]:.2f}s (ingest, segment, classify) = {parts}")
    return ticks[-1] - ticks[0]


def bare_conversion_seconds(folder: Path) -> float:
    """DICOM -> volume conversion alone (ingest's compute), from bytes in memory."""
    from covidct_ingest.convert import convert_series

    instances = [(p.name, p.read_bytes()) for p in sorted(folder.glob("*.dcm"))]
    start = time.perf_counter()
    convert_series(instances)
    return time.perf_counter() - start


def start_workers(env: dict[str, str], logs: Path) -> list[subprocess.Popen[bytes]]:
    processes = []
    for name in ("ingest", "segment", "classify"):
        log = (logs / f"{name}.log").open("wb")
        processes.append(
            subprocess.Popen(
                [str(BIN / f"covidct-{name}")],
                env={**env, "COVIDCT_METRICS_PORT": "0"},  # any free port
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    return processes


# the pure computations the workers time inside their handlers (no reads, writes or messaging)
COMPUTE_TIMINGS = (
    "segment_preprocess_s",
    "segment_infer_s",
    "segment_postprocess_s",
    "segment_qa_s",
    "classify_inference_seconds",
    "classify_metrics_seconds",
    "classify_overview_seconds",
)


def run_once(
    store: S3Store, publisher: ConfirmedPublisher, folder: Path, channel: Any, tap: str
) -> tuple[float, float]:
    """Upload the series, publish its manifest, wait for result-ready; seconds after publish.

    ``tap`` receives a copy of every message on the exchange: the time each one is published
    gives the timeline of the job (ingest indexing, series check, segment, classify).
    The same files give the same job, so main clears the work bucket between rounds."""
    from covidct.submit import submit

    prefix = f"bench/{uuid.uuid4().hex[:8]}"
    manifest = submit(folder, store, lambda *_: None, prefix, progress=False)
    start = time.perf_counter()
    publisher.publish("ingest.manifest", manifest)
    timeline: list[str] = []
    # blocking consume (not a basic_get loop, which would take CPU from the workers)
    for method, _props, body in channel.consume(tap, auto_ack=True, inactivity_timeout=600):
        if method is None:
            raise TimeoutError("no message within 10 minutes")
        elapsed = time.perf_counter() - start
        timeline.append(f"{method.routing_key} {1000 * elapsed:.0f}")
        if method.routing_key != "result.ready":
            continue
        timings = json.loads(body)["timings"]
        compute = sum(float(timings.get(name, 0.0)) for name in COMPUTE_TIMINGS)
        print(f"round: end-to-end {elapsed:.2f}s, compute inside the workers {compute:.2f}s")
        print(f"  published at (ms): {', '.join(timeline)}")
        print(f"  timings: { {k: round(float(v), 3) for k, v in sorted(timings.items())} }")
        channel.cancel()
        return elapsed, compute
    raise TimeoutError("the tap queue was closed")


def clear_work(client: Any, bucket: str, keep_models: bool = True) -> None:
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        keys = [
            {"Key": o["Key"]}
            for o in page.get("Contents", [])
            if not (keep_models and o["Key"].startswith("models/"))
        ]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys})


def main() -> None:
    import pika

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--in-process", action="store_true", help="also time the stages in this process"
    )
    args = parser.parse_args()
    retain_freed_memory()  # as the workers do
    folder = series_folder()
    client = make_s3_client(S3["endpoint"], S3["access_key"], S3["secret_key"], "us-east-1")
    tag = uuid.uuid4().hex[:8]
    exchange, work, inbox = f"bench-{tag}", f"bench-work-{tag}", f"bench-in-{tag}"
    for bucket in (work, inbox):
        client.create_bucket(Bucket=bucket)
    env = {
        **os.environ,
        "COVIDCT_AMQP_URL": AMQP,
        "COVIDCT_EXCHANGE": exchange,
        "COVIDCT_S3_ENDPOINT": S3["endpoint"],
        "COVIDCT_S3_ACCESS_KEY": S3["access_key"],
        "COVIDCT_S3_SECRET_KEY": S3["secret_key"],
        "COVIDCT_WORK_BUCKET": work,
        "COVIDCT_INPUT_BUCKET": inbox,
        "COVIDCT_DEVICE": "cpu",
        "COVIDCT_LOG_LEVEL": "WARNING",
    }
    logs = Path(tempfile.mkdtemp(prefix="covidct-bench-"))
    processes = start_workers(env, logs)
    publisher = ConfirmedPublisher(AMQP, exchange, RETRY_DELAYS)
    connection = pika.BlockingConnection(pika.URLParameters(AMQP))
    channel = connection.channel()
    declare_topology(channel, exchange, RETRY_DELAYS)
    tap = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(tap, exchange, "#")
    store = S3Store(client, inbox)
    try:
        run_once(store, publisher, folder, channel, tap)  # warm-up: models load, caches fill
        if args.in_process:
            bare_seconds(folder)  # the same warm-up (TorchScript optimises early runs)
        end_to_end, bare, in_process = [], [], []
        for _ in range(args.rounds):
            clear_work(client, work)
            conversion = bare_conversion_seconds(folder)
            elapsed, compute = run_once(store, publisher, folder, channel, tap)
            end_to_end.append(elapsed)
            bare.append(compute + conversion)
            if args.in_process:
                in_process.append(bare_seconds(folder))
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(60)
        delete_topology(channel, exchange, RETRY_DELAYS)
        connection.close()
        publisher.close()
        for bucket in (work, inbox):
            clear_work(client, bucket, keep_models=False)
            client.delete_bucket(Bucket=bucket)
    e2e, base = statistics.median(end_to_end), statistics.median(bare)
    print(f"end_to_end_s: {e2e:.3f}")
    print(f"bare_compute_s: {base:.3f}")
    print(f"pipeline_overhead_ms_per_series: {1000 * (e2e - base):.0f}")
    print(f"pipeline_overhead_ratio: {e2e / base:.3f}")
    if in_process:
        print(f"in_process_stage_compute_s: {statistics.median(in_process):.3f}")


if __name__ == "__main__":
    main()
