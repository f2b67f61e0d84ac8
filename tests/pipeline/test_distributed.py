"""The three services as separate processes against the real RabbitMQ and SeaweedFS."""

from __future__ import annotations

import csv
import io
import json
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from covidct_core.s3 import S3Store
from covidct_core.topology import declare_topology
from tests.helpers import channel_for, get_messages, worker_env
from tests.samples import small_tcia_series, tcia_series

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BIN = Path(sys.executable).parent


@pytest.fixture
def services(
    amqp_url: str,
    exchange: str,
    s3_settings: dict[str, str],
    s3_bucket: str,
    input_store: S3Store,
    tmp_path: Path,
) -> Iterator[dict[str, Any]]:
    env = worker_env(amqp_url, exchange, s3_settings, s3_bucket, input_store.bucket)
    env["COVIDCT_DEVICE"] = "cpu"
    connection, channel = channel_for(amqp_url)
    declare_topology(channel, exchange, (1.0, 2.0))  # so the test can read results at once
    connection.close()
    processes = {}
    logs = {}
    for name in ("ingest", "segment", "classify"):
        logs[name] = (tmp_path / f"{name}.log").open("wb")
        processes[name] = subprocess.Popen(
            [str(BIN / f"covidct-{name}")],
            # any free port: a fixed range collided with SeaweedFS's gRPC ports (19333, 19340)
            env={**env, "COVIDCT_METRICS_PORT": "0"},
            stdout=logs[name],
            stderr=subprocess.STDOUT,
        )
    yield {"processes": processes, "env": env, "logs": tmp_path}
    for process in processes.values():
        process.send_signal(signal.SIGTERM)
    for name, process in processes.items():
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        logs[name].close()


def upload(store: S3Store, folder: Path, prefix: str) -> None:
    for path in sorted(folder.glob("*.dcm")):
        store.put_bytes(f"{prefix}/{uuid.uuid4().hex}", path.read_bytes())


def dump_logs(services: dict[str, Any]) -> str:
    return "\n".join(
        f"--- {p.name}\n" + p.read_text(errors="replace")[-3000:]
        for p in sorted(services["logs"].glob("*.log"))
    )


def test_a_dropped_series_yields_results_and_matches_the_embedded_run(
    amqp_url: str,
    exchange: str,
    samples_dir: Path,
    services: dict[str, Any],
    input_store: S3Store,
    s3_store: S3Store,
    tmp_path: Path,
) -> None:
    series = small_tcia_series(samples_dir)
    upload(input_store, series, "study/one")
    got = get_messages(amqp_url, f"{exchange}.results", 1, timeout=300)
    assert got, "no result-ready message\n" + dump_logs(services)
    result = got[0][1]
    csv_bytes = s3_store.get_bytes(result["result_csv"]["key"])
    rows = list(csv.DictReader(io.StringIO(csv_bytes.decode())))
    assert len(rows) == 1
    document = json.loads(s3_store.get_bytes(result["result_json"]["key"]))
    assert abs(float(rows[0]["probability_covid19"]) - result["probability_covid19"]) < 1e-6

    # the embedded run on the same files gives the same numbers
    local = tmp_path / "local"
    shutil.copytree(series, local)
    out = tmp_path / "embedded"
    subprocess.run(
        [str(BIN / "covidct"), "run", str(local), "--out", str(out), "--device", "cpu"],
        check=True,
        capture_output=True,
    )
    embedded_rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(embedded_rows) == 1
    for column in ("probability_covid19", "lung_volume_ml", "percent_opacity"):
        assert abs(float(embedded_rows[0][column]) - float(rows[0][column])) < 1e-5, column
    assert document["provenance"]["job_id"] == result["job_id"]
    assert document["research_use_disclaimer"].startswith("RESEARCH USE ONLY")


def test_three_series_at_once_all_complete(
    amqp_url: str,
    exchange: str,
    samples_dir: Path,
    services: dict[str, Any],
    input_store: S3Store,
) -> None:
    chosen = tcia_series(samples_dir)[:3]
    for i, folder in enumerate(chosen):
        upload(input_store, folder, f"batch/{i}")
    got = get_messages(amqp_url, f"{exchange}.results", 3, timeout=600)
    assert len(got) == 3, dump_logs(services)
    assert len({m[1]["series_instance_uid"] for m in got}) == 3
