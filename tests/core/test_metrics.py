from __future__ import annotations

import urllib.error
import urllib.request

from covidct_core.metrics import HealthServer, create_metrics, prime_stage


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_metrics_health_and_readiness_endpoints() -> None:
    metrics = create_metrics()
    prime_stage(metrics, "segment")
    metrics.observe_outcome("segment", "ok")
    metrics.duration.labels(stage="segment").observe(1.5)
    ready = {"broker": True, "storage": True, "model": False}
    server = HealthServer(metrics.registry, lambda: dict(ready), "127.0.0.1", 0).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        status, text = fetch(base + "/metrics")
        assert status == 200
        assert 'covidct_messages_total{outcome="ok",stage="segment"} 1.0' in text
        assert 'covidct_messages_total{outcome="parked",stage="segment"} 0.0' in text
        assert 'covidct_stage_duration_seconds_count{stage="segment"} 1.0' in text
        assert "covidct_bytes_written_total" in text
        assert "covidct_inflight" in text
        assert fetch(base + "/healthz")[0] == 200
        status, text = fetch(base + "/readyz")
        assert status == 503 and "model FAIL" in text
        ready["model"] = True
        assert fetch(base + "/readyz")[0] == 200
        assert fetch(base + "/nope")[0] == 404
    finally:
        server.stop()
