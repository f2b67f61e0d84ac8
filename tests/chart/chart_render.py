"""Offline rendering of charts/covidct for the chart tests (helm-python-sdk, no cluster)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml
from cloudcoil.models.keda import v1alpha1 as keda
from cloudcoil.models.prometheus_operator import v1 as prom

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "charts" / "covidct"
RELEASE = "covidct"
NAMESPACE = "covidct"
STAGES = ("ingest", "segment", "classify")
GPU_STAGES = ("segment", "classify")
VALUES_FILES = ("values.yaml", "values-cpu.yaml", "values-external.yaml")
# Oldest and newest Kubernetes minor versions the chart claims (Chart.yaml kubeVersion >=1.27).
KUBE_VERSIONS = ("1.27.0", "1.33.0")

# The prometheus-operator API is absent offline, so "auto" renders no ServiceMonitor or
# PrometheusRule: force them on to test them.
MONITORING_ON: dict[str, Any] = {
    "monitoring": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}
}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def values_file(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((CHART_DIR / name).read_text(encoding="utf-8")) or {}
    return data


# Each case is a values file plus overrides; "features" switches on the optional paths
# that the values files leave off (HPA fallback, models on a PVC, selection rules).
RENDER_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "default": ("values.yaml", MONITORING_ON),
    "cpu": ("values-cpu.yaml", MONITORING_ON),
    "external": ("values-external.yaml", {}),
    "features": (
        "values.yaml",
        deep_merge(
            MONITORING_ON,
            {
                "models": {"source": "pvc", "pvc": {"claimName": "covidct-models"}},
                "config": {"selectionRules": "prefer:\n  - thinnest_slices\n"},
                "stages": {
                    stage: {
                        "autoscaling": {"keda": {"enabled": False}},
                        "extraEnv": {"EXTRA_FLAG": "1"},
                    }
                    for stage in STAGES
                },
                "rabbitmq": {"persistence": {"enabled": False}},
                "minio": {"persistence": {"enabled": False}},
            },
        ),
    ),
}


def case_values(case: str) -> dict[str, Any]:
    file_name, override = RENDER_CASES[case]
    return deep_merge(values_file(file_name), override)


def render(chart: helm.Chart, values: dict[str, Any]) -> list[dict[str, Any]]:
    """Render and parse every manifest (NOTES.txt excluded)."""
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    docs: list[dict[str, Any]] = []
    for path, text in sorted(manifests.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def render_notes(chart: helm.Chart, values: dict[str, Any]) -> str:
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    return next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))


def objects(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in objects(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]


CRD_MODELS: dict[tuple[str, str], Any] = {
    ("keda.sh/v1alpha1", "ScaledObject"): keda.ScaledObject,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): keda.TriggerAuthentication,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): prom.ServiceMonitor,
    ("monitoring.coreos.com/v1", "PodMonitor"): prom.PodMonitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): prom.PrometheusRule,
}


def is_crd(doc: dict[str, Any]) -> bool:
    return str(doc["apiVersion"]).split("/")[0].endswith(("keda.sh", "monitoring.coreos.com"))


def validate_crd(doc: dict[str, Any]) -> None:
    """Validate with the cloudcoil model; a field the model does not know fails."""
    model = CRD_MODELS[(doc["apiVersion"], doc["kind"])]
    parsed = model.model_validate(doc)
    back = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
    assert back == doc, f"{doc['kind']} {doc['metadata']['name']}: unknown or coerced fields"
