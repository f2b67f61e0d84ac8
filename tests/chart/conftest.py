"""Fixtures of the chart tests; the helpers live in chart_render.py."""

from __future__ import annotations

import os
import shutil
from typing import Any

import helm_python as helm
import pytest
from chart_render import CHART_DIR, RENDER_CASES, case_values, render


@pytest.fixture(scope="session")
def chart() -> helm.Chart:
    return helm.Chart.load(CHART_DIR)


@pytest.fixture(scope="session")
def rendered(chart: helm.Chart) -> dict[str, list[dict[str, Any]]]:
    return {case: render(chart, case_values(case)) for case in RENDER_CASES}


@pytest.fixture(scope="session")
def promtool() -> str:
    """promtool (Debian package `prometheus`): skip without it locally, fail in CI."""
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing in CI: apt-get install -y prometheus")
        pytest.skip("promtool not installed (apt-get install -y prometheus); required in CI")
    return path
