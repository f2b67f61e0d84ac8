"""PrometheusRule, ServiceMonitors and Grafana dashboards; PromQL checked by promtool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from chart_render import (
    CHART_DIR,
    RELEASE,
    STAGES,
    case_values,
    deep_merge,
    objects,
    one,
    render,
    values_file,
)

Docs = dict[str, list[dict[str, Any]]]
DASHBOARDS = sorted((CHART_DIR / "dashboards").glob("*.json"))
ALERTS_TEST = Path(__file__).with_name("alerts_test.yaml")
# Grafana variables replaced by concrete values so that promtool can parse the queries.
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$namespace": "covidct"}
REQUIRED_DASHBOARD_METRICS = {
    "covidct_messages_total",
    "covidct_stage_duration_seconds_bucket",
    "covidct_end_to_end_seconds_bucket",
    "rabbitmq_detailed_queue_messages_ready",
    "rabbitmq_detailed_queue_head_message_timestamp",
    "rabbitmq_detailed_queue_messages",
    "kube_deployment_status_replicas_available",
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_FB_USED",
}


def run_promtool(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def write_rules(docs: list[dict[str, Any]], directory: Path) -> Path:
    (rule,) = objects(docs, "PrometheusRule")
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for var, value in GRAFANA_VARS.items():
                expr = expr.replace(var, value)
            queries.append(expr)
    return queries


def queries_as_rules(queries: list[str]) -> dict[str, Any]:
    rules = [{"record": f"covidct:dashboard_query:{i}", "expr": q} for i, q in enumerate(queries)]
    return {"groups": [{"name": "dashboard-queries", "rules": rules}]}


# ---- promtool ----


def test_prometheus_rule_passes_promtool_check(
    rendered: Docs, promtool: str, tmp_path: Path
) -> None:
    rules = write_rules(rendered["default"], tmp_path)
    result = run_promtool(promtool, "check", "rules", str(rules), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout


def test_alert_unit_tests(rendered: Docs, promtool: str, tmp_path: Path) -> None:
    write_rules(rendered["default"], tmp_path)
    shutil.copy(ALERTS_TEST, tmp_path / ALERTS_TEST.name)
    result = run_promtool(promtool, "test", "rules", ALERTS_TEST.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_unit_tests_notice_a_changed_threshold(
    chart: helm.Chart, promtool: str, tmp_path: Path
) -> None:
    lax = deep_merge(
        case_values("default"), {"monitoring": {"prometheusRule": {"parkedRatio": 0.5}}}
    )
    write_rules(render(chart, lax), tmp_path)
    shutil.copy(ALERTS_TEST, tmp_path / ALERTS_TEST.name)
    result = run_promtool(promtool, "test", "rules", ALERTS_TEST.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "CovidctStageParkingMessages" in result.stdout + result.stderr


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_queries_parse(path: Path, promtool: str, tmp_path: Path) -> None:
    queries = dashboard_queries(json.loads(path.read_text()))
    assert queries
    rules = tmp_path / "dashboard_rules.yaml"
    rules.write_text(yaml.safe_dump(queries_as_rules(queries), sort_keys=False))
    result = run_promtool(promtool, "check", "rules", str(rules), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


def test_keda_prometheus_queries_parse(chart: helm.Chart, promtool: str, tmp_path: Path) -> None:
    docs = render(chart, deep_merge(case_values("default"), {"keda": {"trigger": "prometheus"}}))
    queries = [
        t["metadata"]["query"]
        for so in objects(docs, "ScaledObject")
        for t in so["spec"]["triggers"]
    ]
    assert len(queries) == 4
    rules = tmp_path / "keda_rules.yaml"
    rules.write_text(yaml.safe_dump(queries_as_rules(queries), sort_keys=False))
    result = run_promtool(promtool, "check", "rules", str(rules), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_query(promtool: str, tmp_path: Path) -> None:
    rules = tmp_path / "broken.yaml"
    rules.write_text(yaml.safe_dump(queries_as_rules(["sum by (stage (rate(x[5m]))"])))
    assert run_promtool(promtool, "check", "rules", str(rules), cwd=tmp_path).returncode != 0


# ---- dashboards ----


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_structure(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace"} <= variables
    for panel in dashboard["panels"]:
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys()
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert ref_ids and len(ref_ids) == len(set(ref_ids))


def test_dashboards_cover_the_required_panels() -> None:
    text = " ".join(q for p in DASHBOARDS for q in dashboard_queries(json.loads(p.read_text())))
    used = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text))
    assert used >= REQUIRED_DASHBOARD_METRICS, REQUIRED_DASHBOARD_METRICS - used
    assert "histogram_quantile(0.95" in text and "histogram_quantile(0.5" in text


def test_dashboards_ship_as_labelled_configmaps(rendered: Docs) -> None:
    maps = [
        m for m in objects(rendered["default"], "ConfigMap") if "dashboard" in m["metadata"]["name"]
    ]
    assert len(maps) == len(DASHBOARDS)
    for path, cm in zip(DASHBOARDS, sorted(maps, key=lambda m: m["metadata"]["name"]), strict=True):
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert json.loads(cm["data"][path.name]) == json.loads(path.read_text())


# ---- scraping ----


def test_service_monitors_select_the_metrics_services(rendered: Docs) -> None:
    docs = rendered["default"]
    workers = one(docs, "ServiceMonitor", f"{RELEASE}-workers")
    selector = workers["spec"]["selector"]["matchLabels"]
    selected = [
        s["metadata"]["name"]
        for s in objects(docs, "Service")
        if all(s["metadata"]["labels"].get(k) == v for k, v in selector.items())
    ]
    assert sorted(selected) == sorted(f"{RELEASE}-{s}-metrics" for s in STAGES)
    assert workers["spec"]["endpoints"][0]["port"] == "metrics"
    broker = one(docs, "ServiceMonitor", f"{RELEASE}-rabbitmq")
    detailed = next(e for e in broker["spec"]["endpoints"] if e["path"] == "/metrics/detailed")
    assert {"queue_coarse_metrics", "queue_metrics"} <= set(detailed["params"]["family"])


def test_monitoring_auto_needs_the_operator_api(chart: helm.Chart) -> None:
    docs = render(chart, values_file("values.yaml"))  # offline: the API is absent
    assert not objects(docs, "ServiceMonitor") and not objects(docs, "PrometheusRule")
    assert [m for m in objects(docs, "ConfigMap") if "dashboard" in m["metadata"]["name"]]
