"""The ``covidct`` command: ``run`` (embedded pipeline), ``submit`` and ``phantom``.

This is an entrypoint: it configures logging and wires dependencies; the work is done by the
same stage objects the distributed workers use. Research use only.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from covidct_core import RESEARCH_USE_DISCLAIMER
from covidct_core.allocator import retain_freed_memory
from covidct_core.errors import CovidCtError, PermanentError
from covidct_core.logs import configure_logging
from covidct_core.messages import Message, new_message_id, utc_now_iso
from covidct_core.stage import Outbound
from covidct_core.storage import LocalStore

RESULT_FILES = ("result.csv", "result.json", "overview.png")


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)  # noqa: T201 (the CLI talks to its user)


def _link_or_copy(source: Path, target: Path) -> None:
    import shutil

    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def build_model_stages(
    work: LocalStore, segmenter: str, device: str, seg_model: str | None, cls_model: str | None
) -> dict[str, Any]:
    from covidct_classify.loading import load_classifier
    from covidct_classify.stage import ClassifyStage
    from covidct_segment.segmenters import build_segmenter
    from covidct_segment.stage import SegmentStage

    return {
        "segment": SegmentStage(work, build_segmenter(segmenter, seg_model, None, device)),
        "classify": ClassifyStage(work, load_classifier(cls_model, None, device)),
    }


def command_run(args: argparse.Namespace) -> int:
    from covidct.embedded import EmbeddedPipeline, write_error_json
    from covidct_ingest.bag import collect_files, iter_series_outcomes, scan_bag
    from covidct_ingest.config import load_config
    from covidct_ingest.series_ready import write_volume

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    work = LocalStore(out / ".work")
    config = load_config(args.config)
    _say(f"covidct run — {RESEARCH_USE_DISCLAIMER}")
    started = time.perf_counter()
    scan = scan_bag(collect_files(Path(args.input)), config)
    _say(
        f"[ingest] {len(scan.headers)} DICOM instances in {len(scan.plans)} series"
        f" ({len(scan.unusable)} unusable files) — {time.perf_counter() - started:.1f}s"
    )
    stages = build_model_stages(work, args.segmenter, args.device, args.seg_model, args.cls_model)

    def on_stage(stage: str, series: str) -> None:
        _say(f"[{stage}] {series}")

    pipeline = EmbeddedPipeline(work, stages, on_stage)
    done = 0
    failures: list[str] = []
    for outcome in iter_series_outcomes(scan, config):
        label = outcome.series_key
        if outcome.status == "skipped":
            _say(f"[ingest] skipped {label}: {outcome.code} — {outcome.reason}")
            continue
        target = out / label
        if outcome.status == "rejected" or outcome.result is None:
            write_error_json(
                target,
                outcome.code or "REJECTED",
                outcome.reason,
                {"stage": "ingest", "inputs": list(outcome.inputs)[:50]},
            )
            failures.append(f"{label}: {outcome.code} — {outcome.reason}")
            _say(f"[ingest] rejected {label}: {outcome.code} — {outcome.reason}")
            continue
        _say(f"[ingest] converted {label} ({outcome.instance_count} instances)")
        ready = write_volume(work, outcome.result, new_message_id(), utc_now_iso(), 0.0)
        try:
            results = list(pipeline.run(Outbound("segment.request", ready)))
        except PermanentError as e:
            write_error_json(target, e.code, e.reason, {"inputs": e.inputs})
            failures.append(f"{label}: {e.code} — {e.reason}")
            _say(f"[error] {label}: {e.code} — {e.reason}")
            continue
        done += _export(work, results, ready, target, out / "results.csv")
    if done:
        _say(f"done: {done} series in {time.perf_counter() - started:.1f}s -> {out}")
        return 0
    _say("no series could be processed:")
    for line in failures or ["no eligible axial CT series found"]:
        _say(f"  - {line}")
    return 1


def _export(
    work: LocalStore, results: Sequence[Message], ready: Message, target: Path, collected: Path
) -> int:
    """Give a finished series its user-facing files; add its row to ``collected``."""
    from covidct_classify.results import upsert_results_csv

    exported = 0
    target.mkdir(parents=True, exist_ok=True)
    _link_or_copy(work.root / ready["volume"]["key"], target / "image.mha")
    for result in results:
        if result.get("schema") != "covidct.result-ready/v1":
            continue
        prefix = result["result_csv"]["key"].rsplit("/", 1)[0]
        job_id = result["job_id"]
        seg = result["segmentation_model"]
        mask_key = f"masks/{job_id}/{seg['name']}@{seg['version']}/lung.mha"
        _link_or_copy(work.root / mask_key, target / "lung_mask.mha")
        for name in RESULT_FILES:
            source = work.root / prefix / name
            if source.is_file():
                _link_or_copy(source, target / name)
        upsert_results_csv(collected, (target / "result.csv").read_bytes())
        exported += 1
        _say(f"[classify] {target.name}: P(COVID-19) = {result['probability_covid19']:.3f}")
    return exported


def command_submit(args: argparse.Namespace) -> int:
    from covidct.submit import submit
    from covidct_core.broker import ConfirmedPublisher
    from covidct_core.config import BrokerSettings, StorageSettings, read_settings
    from covidct_core.s3 import S3Store, make_s3_client

    broker = read_settings(BrokerSettings, os.environ)
    storage = read_settings(StorageSettings, os.environ)
    client = make_s3_client(
        storage.endpoint, storage.access_key, storage.secret_key, storage.region
    )
    store = S3Store(client, args.bucket or storage.input_bucket)
    store.ensure_bucket()
    publisher = ConfirmedPublisher(broker.amqp_url, broker.exchange, broker.retry_delays)
    try:
        manifest = submit(Path(args.path), store, publisher.publish, args.prefix)
    finally:
        publisher.close()
    _say(
        f"submitted {len(manifest['keys'])} objects to s3://{store.bucket}/{manifest['prefix']}"
        f" (correlation id {manifest['correlation_id']})"
    )
    return 0


def command_phantom(args: argparse.Namespace) -> int:
    from covidct.phantom import write_phantom_series

    folder = write_phantom_series(Path(args.out), seed=args.seed, lesions=args.lesions)
    _say(f"wrote a synthetic chest CT DICOM series to {folder}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="covidct", description=RESEARCH_USE_DISCLAIMER)
    top.add_argument("--log-level", default="WARNING")
    sub = top.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run ingest -> segment -> classify in this process")
    run.add_argument("input", help="a DICOM folder, a zip, or a (multi-frame) DICOM file")
    run.add_argument("--out", type=Path, required=True)
    run.add_argument("--segmenter", choices=("model", "classical"), default="model")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    run.add_argument("--config", help="ingest selection/assembly rules (JSON or YAML)")
    run.add_argument("--seg-model", help="lung segmentation bundle folder")
    run.add_argument("--cls-model", help="classification bundle folder")
    run.set_defaults(func=command_run)
    submit = sub.add_parser("submit", help="upload a folder or zip and notify ingest")
    submit.add_argument("path")
    submit.add_argument("--bucket", help="input bucket (default $COVIDCT_INPUT_BUCKET)")
    submit.add_argument("--prefix", help="key prefix (default submit/<random>)")
    submit.set_defaults(func=command_submit)
    phantom = sub.add_parser("phantom", help="write a synthetic chest CT DICOM series")
    phantom.add_argument("--out", required=True)
    phantom.add_argument("--lesions", action="store_true", help="add COVID-like findings")
    phantom.add_argument("--seed", type=int, default=0)
    phantom.set_defaults(func=command_phantom)
    return top


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    configure_logging(args.log_level, json_output=False)
    retain_freed_memory()
    try:
        code = int(args.func(args))
    except (CovidCtError, FileNotFoundError) as e:
        _say(f"error: {e}")
        code = 2
    sys.exit(code)
