from __future__ import annotations

import pytest

from covidct_core.config import read_worker_settings
from covidct_core.errors import ConfigError


def test_missing_variables_are_all_listed_in_one_error() -> None:
    with pytest.raises(ConfigError) as caught:
        read_worker_settings({"COVIDCT_S3_ENDPOINT": "http://x"})
    message = str(caught.value)
    for name in ("COVIDCT_AMQP_URL", "COVIDCT_S3_ACCESS_KEY", "COVIDCT_S3_SECRET_KEY"):
        assert name in message
    assert "COVIDCT_S3_ENDPOINT" not in message
    assert len(caught.value.problems) == 3


def test_invalid_values_are_reported_with_the_missing_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        read_worker_settings({"COVIDCT_PREFETCH": "many", "COVIDCT_RETRY_DELAYS": "a,b"})
    problems = caught.value.problems
    assert any("COVIDCT_PREFETCH is invalid" in p for p in problems)
    assert any("COVIDCT_RETRY_DELAYS is invalid" in p for p in problems)
    assert any("COVIDCT_AMQP_URL is required" in p for p in problems)


def test_complete_environment_gives_typed_settings() -> None:
    settings = read_worker_settings(
        {
            "COVIDCT_AMQP_URL": "amqp://guest:guest@127.0.0.1:5672/%2F",
            "COVIDCT_S3_ENDPOINT": "http://127.0.0.1:8333",
            "COVIDCT_S3_ACCESS_KEY": "k",
            "COVIDCT_S3_SECRET_KEY": "s",
            "COVIDCT_PREFETCH": "3",
            "COVIDCT_RETRY_DELAYS": "1,2.5",
        }
    )
    assert settings.broker.prefetch == 3
    assert settings.broker.retry_delays == (1.0, 2.5)
    assert settings.storage.work_bucket == "covidct-work"
    assert settings.process.metrics_port == 9100
