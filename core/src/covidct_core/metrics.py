"""Prometheus metrics (one registry per process) and the /metrics, /healthz, /readyz server."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

OUTCOMES = ("ok", "retried", "parked")
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


@dataclass(frozen=True)
class StageMetrics:
    """The standard per-stage metrics, all on one registry."""

    registry: CollectorRegistry
    messages: Counter
    duration: Histogram
    inflight: Gauge
    bytes_read: Counter
    bytes_written: Counter
    end_to_end: Histogram

    def observe_outcome(self, stage: str, outcome: str) -> None:
        self.messages.labels(stage=stage, outcome=outcome).inc()


def create_metrics(registry: CollectorRegistry | None = None) -> StageMetrics:
    registry = registry or CollectorRegistry()
    metrics = StageMetrics(
        registry=registry,
        messages=Counter(
            "covidct_messages",
            "Messages handled, by stage and outcome (ok, retried, parked).",
            ["stage", "outcome"],
            registry=registry,
        ),
        duration=Histogram(
            "covidct_stage_duration_seconds",
            "Time spent handling one message, by stage.",
            ["stage"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        ),
        inflight=Gauge(
            "covidct_inflight", "Messages being handled now.", ["stage"], registry=registry
        ),
        bytes_read=Counter(
            "covidct_bytes_read", "Bytes read from object storage.", ["stage"], registry=registry
        ),
        bytes_written=Counter(
            "covidct_bytes_written",
            "Bytes written to object storage.",
            ["stage"],
            registry=registry,
        ),
        end_to_end=Histogram(
            "covidct_end_to_end_seconds",
            "From the first instance seen by ingest to the result written.",
            buckets=DURATION_BUCKETS,
            registry=registry,
        ),
    )
    return metrics


def prime_stage(metrics: StageMetrics, stage: str) -> None:
    """Create every label combination for ``stage`` so that rates start at zero."""
    for outcome in OUTCOMES:
        metrics.messages.labels(stage=stage, outcome=outcome)
    metrics.duration.labels(stage=stage)
    metrics.inflight.labels(stage=stage)
    metrics.bytes_read.labels(stage=stage)
    metrics.bytes_written.labels(stage=stage)


ReadinessCheck = Callable[[], dict[str, bool]]


class HealthServer:
    """Serves /metrics, /healthz (alive) and /readyz (all readiness checks true)."""

    def __init__(
        self, registry: CollectorRegistry, readiness: ReadinessCheck, host: str, port: int
    ) -> None:
        self.registry = registry
        self.readiness = readiness
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.handle_get(self)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def handle_get(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path.split("?", 1)[0]
        if path == "/metrics":
            self._reply(request, 200, generate_latest(self.registry), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            self._reply(request, 200, b"ok\n", "text/plain")
        elif path == "/readyz":
            checks = self.readiness()
            ok = all(checks.values())
            body = "".join(f"{name} {'ok' if v else 'FAIL'}\n" for name, v in checks.items())
            self._reply(request, 200 if ok else 503, body.encode(), "text/plain")
        else:
            self._reply(request, 404, b"not found\n", "text/plain")

    @staticmethod
    def _reply(request: BaseHTTPRequestHandler, code: int, body: bytes, ctype: str) -> None:
        request.send_response(code)
        request.send_header("Content-Type", ctype)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def start(self) -> HealthServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
