"""helm lint, offline render, and schema validation of every rendered object."""

from __future__ import annotations

import copy
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
from chart_render import (
    CHART_DIR,
    KUBE_VERSIONS,
    RENDER_CASES,
    VALUES_FILES,
    case_values,
    is_crd,
    objects,
    render_notes,
    validate_crd,
    values_file,
)


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("values_name", VALUES_FILES)
def test_helm_lint_strict(values_name: str, kube_version: str) -> None:
    report = helm.lint(
        CHART_DIR, values_file(values_name), strict=True, kube_version=f"v{kube_version}"
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


def test_kubernetes_validate_has_claimed_versions() -> None:
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}},
            version,
            strict=True,
        )


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("case", list(RENDER_CASES))
def test_native_objects_validate_strict(
    rendered: dict[str, list[dict[str, Any]]], case: str, kube_version: str
) -> None:
    native = [d for d in rendered[case] if not is_crd(d)]
    assert len(native) > 10
    for doc in native:
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{case} {doc['kind']}/{doc['metadata']['name']} on {kube_version}: {e}")


@pytest.mark.parametrize("case", list(RENDER_CASES))
def test_crd_objects_validate_strict(rendered: dict[str, list[dict[str, Any]]], case: str) -> None:
    crds = [d for d in rendered[case] if is_crd(d)]
    assert crds, "every case renders KEDA or prometheus-operator objects"
    for doc in crds:
        validate_crd(doc)


def test_default_render_has_every_crd_kind(rendered: dict[str, list[dict[str, Any]]]) -> None:
    kinds = {d["kind"] for d in rendered["default"] if is_crd(d)}
    assert kinds == {"ScaledObject", "TriggerAuthentication", "ServiceMonitor", "PrometheusRule"}


def test_crd_validation_rejects_unknown_and_mistyped_fields(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    scaled = objects(rendered["default"], "ScaledObject")[0]
    unknown = copy.deepcopy(scaled)
    unknown["spec"]["triggers"][0]["queueName"] = "misplaced"
    with pytest.raises(AssertionError, match="unknown or coerced"):
        validate_crd(unknown)
    rule = copy.deepcopy(objects(rendered["default"], "PrometheusRule")[0])
    rule["spec"]["groups"][0]["rules"][0]["severity"] = "warning"
    with pytest.raises(AssertionError, match="unknown or coerced"):
        validate_crd(rule)
    monitor = copy.deepcopy(objects(rendered["default"], "ServiceMonitor")[0])
    monitor["spec"]["endpoints"][0]["interval"] = ["30s"]
    with pytest.raises(ValueError):
        validate_crd(monitor)


def test_kubernetes_validate_strict_rejects_unknown_field(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    deployment = copy.deepcopy(objects(rendered["default"], "Deployment")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["gpu"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[0], strict=True)


@pytest.mark.parametrize("case", ["default", "external"])
def test_notes_tell_how_to_drop_a_series_and_find_results(chart: helm.Chart, case: str) -> None:
    notes = render_notes(chart, case_values(case))
    assert "mc cp --recursive" in notes
    assert "results/<job_id>/" in notes
    if case == "default":
        assert "port-forward svc/covidct-minio 9000:9000" in notes
    else:
        assert "https://s3.eu-central-1.amazonaws.com" in notes
