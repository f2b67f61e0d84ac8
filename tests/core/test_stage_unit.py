from __future__ import annotations

from pathlib import Path

from covidct_core.broker import RETRY_HEADER, retries_so_far
from covidct_core.messages import JobIdentity, ObjectRef, series_ready
from covidct_core.stage import run_stage
from covidct_core.storage import LocalStore
from covidct_core.topology import StageQueues
from tests.core.echo_stage import EchoStage

SHA = "c" * 64


def make_series_ready(series: str = "ok", job_id: str = "00112233445566aa") -> dict:
    ident = JobIdentity(job_id, "1.2", series, "corr", "2026-12-04T10:00:00.000Z", SHA)
    return series_ready(ident, ObjectRef("b", "v", 1, SHA), ObjectRef("b", "s", 1, SHA), {})


def test_run_stage_reuses_the_completion_record(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    stage = EchoStage(store)
    message = make_series_ready()
    first = run_stage(stage, message, store)
    second = run_stage(stage, message, store)
    assert not first.reused and second.reused
    assert second.outbound == first.outbound
    assert first.outbound[0].message["message_id"] == second.outbound[0].message["message_id"]
    assert len(list(store.list("calls/"))) == 1


def test_retries_are_counted_from_x_death() -> None:
    queues = StageQueues("segment", "covidct", (10.0, 60.0))
    assert retries_so_far(None, queues) == 0
    headers = {
        "x-death": [
            {"queue": "covidct.segment.retry.0-10s", "reason": "expired", "count": 1},
            {"queue": b"covidct.segment.retry.1-60s", "reason": b"expired", "count": 2},
            {"queue": "covidct.ingest.retry.0-10s", "reason": "expired", "count": 5},
            {"queue": "covidct.segment", "reason": "rejected", "count": 1},
        ]
    }
    assert retries_so_far(headers, queues) == 3
    assert retries_so_far({RETRY_HEADER: 4}, queues) == 4
