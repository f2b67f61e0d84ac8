"""What the rendered chart must guarantee: scaling, GPUs, security, contracts."""

from __future__ import annotations

import re
from typing import Any

import helm_python as helm
import pytest
import yaml
from chart_render import (
    CHART_DIR,
    GPU_STAGES,
    RELEASE,
    ROOT,
    STAGES,
    case_values,
    deep_merge,
    objects,
    one,
    pod_specs,
    render,
    validate_crd,
    values_file,
)

Docs = dict[str, list[dict[str, Any]]]
GPU = "nvidia.com/gpu"


def deployment(docs: list[dict[str, Any]], stage: str) -> dict[str, Any]:
    return one(docs, "Deployment", f"{RELEASE}-{stage}")


def pod_labels(doc: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = doc["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def container(doc: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = doc["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(doc)["env"]}


# ---- autoscaling ----


def test_each_stage_scales_on_its_own_queue(rendered: Docs) -> None:
    docs = rendered["default"]
    expected = {
        "ingest": {"covidct.ingest", "covidct.ingest.minio"},
        "segment": {"covidct.segment"},
        "classify": {"covidct.classify"},
    }
    auth = one(docs, "TriggerAuthentication", f"{RELEASE}-rabbitmq")
    (ref,) = auth["spec"]["secretTargetRef"]
    assert ref["parameter"] == "host"
    secret = one(docs, "Secret", ref["name"])
    assert ref["key"] in secret["data"]
    for stage, queues in expected.items():
        scaled = one(docs, "ScaledObject", f"{RELEASE}-{stage}")
        assert (
            scaled["spec"]["scaleTargetRef"]["name"] == deployment(docs, stage)["metadata"]["name"]
        )
        triggers = scaled["spec"]["triggers"]
        assert {t["metadata"]["queueName"] for t in triggers} == queues
        for trigger in triggers:
            assert trigger["type"] == "rabbitmq"
            # http = management API: QueueLength counts ready + unacked messages.
            assert trigger["metadata"]["protocol"] == "http"
            assert trigger["metadata"]["mode"] == "QueueLength"
            assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
        assert {"pollingInterval", "cooldownPeriod", "maxReplicaCount"} <= scaled["spec"].keys()
        assert "activationValue" in triggers[0]["metadata"]


def test_prometheus_trigger_counts_ready_and_unacked_per_queue(chart: helm.Chart) -> None:
    values = {
        "keda": {"trigger": "prometheus"},
        "rabbitmq": {"enabled": False},
        "amqp": {"url": "amqp://u:p@rabbit:5672/%2F"},  # no management URL needed
    }
    docs = render(chart, values)
    assert not objects(docs, "TriggerAuthentication")
    queries = {}
    for stage in STAGES:
        for trigger in one(docs, "ScaledObject", f"{RELEASE}-{stage}")["spec"]["triggers"]:
            assert trigger["type"] == "prometheus"
            validate_crd(one(docs, "ScaledObject", f"{RELEASE}-{stage}"))
            assert trigger["metadata"]["serverAddress"].startswith("http")
            queries[trigger["name"]] = trigger["metadata"]["query"]
    assert queries["covidct-segment"] == (
        'sum(rabbitmq_detailed_queue_messages{queue="covidct.segment", vhost="/"})'
    )
    assert set(queries) == {
        "covidct-ingest",
        "covidct-ingest-minio",
        "covidct-segment",
        "covidct-classify",
    }


def test_gpu_stages_may_scale_to_zero_and_wait_for_the_job(rendered: Docs) -> None:
    docs = rendered["default"]
    for stage in GPU_STAGES:
        scaled = one(docs, "ScaledObject", f"{RELEASE}-{stage}")
        assert scaled["spec"]["minReplicaCount"] == 0
        grace = deployment(docs, stage)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace >= 600
        behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] == grace


def test_autoscaled_deployments_leave_replicas_to_the_scaler(rendered: Docs) -> None:
    for stage in STAGES:
        assert "replicas" not in deployment(rendered["default"], stage)["spec"]
        assert deployment(rendered["cpu"], stage)["spec"]["replicas"] == 1
    assert not objects(rendered["cpu"], "ScaledObject")
    assert not objects(rendered["cpu"], "HorizontalPodAutoscaler")


def test_hpa_fallback_without_keda(rendered: Docs) -> None:
    docs = rendered["features"]
    assert not objects(docs, "ScaledObject") and not objects(docs, "TriggerAuthentication")
    for stage in STAGES:
        hpa = one(docs, "HorizontalPodAutoscaler", f"{RELEASE}-{stage}")
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["name"] == f"{RELEASE}-{stage}"
        assert hpa["spec"]["minReplicas"] >= 1  # an HPA cannot scale to zero
        assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


# ---- GPUs ----


def test_gpu_stages_request_a_gpu_by_default(rendered: Docs) -> None:
    for case in ("default", "external", "features"):
        for stage in STAGES:
            limits = container(deployment(rendered[case], stage))["resources"]["limits"]
            assert (limits.get(GPU) == 1) is (stage in GPU_STAGES), (case, stage)


def test_cpu_values_request_no_gpu(rendered: Docs) -> None:
    docs = rendered["cpu"]
    for stage in STAGES:
        doc = deployment(docs, stage)
        assert GPU not in str(container(doc)["resources"])
        assert not doc["spec"]["template"]["spec"].get("tolerations")
    config = one(docs, "ConfigMap", f"{RELEASE}-config")
    assert config["data"]["COVIDCT_DEVICE"] == "cpu"


def test_cpu_values_use_cpu_image_tags_of_the_app_version() -> None:
    app_version = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())["appVersion"]
    cpu = values_file("values-cpu.yaml")
    for stage in GPU_STAGES:
        assert cpu["stages"][stage]["image"]["tag"] == f"{app_version}-cpu"


# ---- security ----


@pytest.mark.parametrize("case", ["default", "cpu", "external", "features"])
def test_every_pod_runs_non_root_read_only(rendered: Docs, case: str) -> None:
    pods = list(pod_specs(rendered[case]))
    assert len(pods) >= 3
    for name, spec in pods:
        pod_sc = spec.get("securityContext", {})
        assert pod_sc.get("runAsNonRoot") is True, name
        assert pod_sc.get("runAsUser", 0) != 0, name
        assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        assert spec.get("automountServiceAccountToken") is False, name
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert sc["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert sc["capabilities"]["drop"] == ["ALL"], (name, c["name"])
            assert sc.get("runAsNonRoot", True) is True, (name, c["name"])
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, (name, c["name"])


def test_worker_pods_run_as_uid_10001(rendered: Docs) -> None:
    for stage in STAGES:
        spec = deployment(rendered["default"], stage)["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsUser"] == 10001
        tmp = next(v for v in spec["volumes"] if v["name"] == "tmp")
        assert "emptyDir" in tmp


# ---- values schema ----


@pytest.mark.parametrize(
    "bad",
    [
        {"unknownTopLevel": True},
        {"stages": {"ingest": {"replicas": 2}}},
        {"stages": {"segment": {"replicaCount": "two"}}},
        {"stages": {"classify": {"autoscaling": {"keda": {"queueName": "x"}}}}},
        {"stages": {"segment": {"image": {"pullPolicy": "Sometimes"}}}},
        {"models": {"source": "ftp"}},
        {"config": {"ingestTrigger": "webhook"}},
        {"config": {"retryDelays": "10s,60s"}},
        {"monitoring": {"serviceMonitor": {"enabled": "yes"}}},
        {"rabbitmq": {"auth": {"password": "has spaces!"}}},
        {"networkPolicy": {"egressPorts": [70000]}},
    ],
)
def test_schema_refuses_bad_values(chart: helm.Chart, bad: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError):
        chart.render(bad, name=RELEASE, namespace=RELEASE)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"rabbitmq": {"enabled": False}}, "amqp.url or amqp.existingSecret"),
        (
            {"minio": {"enabled": False}, "s3": {"endpoint": "https://s3.example"}},
            "s3.accessKey and s3.secretKey",
        ),
        ({"models": {"source": "pvc"}}, "models.pvc.claimName"),
        (
            {"rabbitmq": {"enabled": False}, "amqp": {"url": "amqp://u:p@h:5672/%2F"}},
            "amqp.managementUrl",
        ),
        (
            {"stages": {"ingest": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}}},
            "minReplicas must not exceed",
        ),
    ],
)
def test_inconsistent_values_fail_with_a_reason(
    chart: helm.Chart, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        chart.render(values, name=RELEASE, namespace=RELEASE)


def test_stage_value_blocks_have_the_same_shape() -> None:
    def shape(node: Any) -> Any:
        if isinstance(node, dict) and node and not any("/" in str(k) for k in node):
            return {k: shape(v) for k, v in node.items()}
        return type(node).__name__

    stages = values_file("values.yaml")["stages"]
    ingest = shape(stages["ingest"])
    ingest["resources"] = "resources"  # GPU stages add nvidia.com/gpu limits
    for stage in GPU_STAGES:
        other = shape(stages[stage])
        other["resources"] = "resources"
        assert other == ingest, stage


# ---- rollout safety ----


def test_checksum_annotations_follow_config_and_secrets(chart: helm.Chart) -> None:
    fixed = {
        "rabbitmq": {"auth": {"password": "fixedpassword1"}},
        "minio": {"auth": {"rootPassword": "fixedpassword2"}},
    }

    def annotations(extra: dict[str, Any]) -> dict[str, dict[str, str]]:
        docs = render(chart, deep_merge(fixed, extra))
        return {
            s: deployment(docs, s)["spec"]["template"]["metadata"]["annotations"] for s in STAGES
        }

    base = annotations({})
    for stage in STAGES:
        for key in ("checksum/config", "checksum/secret"):
            assert re.fullmatch(r"[0-9a-f]{64}", base[stage][key]), (stage, key)
    config_changed = annotations({"config": {"logLevel": "DEBUG"}})
    secret_changed = annotations({"rabbitmq": {"auth": {"password": "otherpassword3"}}})
    for stage in STAGES:
        assert config_changed[stage]["checksum/config"] != base[stage]["checksum/config"]
        assert config_changed[stage]["checksum/secret"] == base[stage]["checksum/secret"]
        assert secret_changed[stage]["checksum/secret"] != base[stage]["checksum/secret"]


def test_pdb_per_stage_selects_its_pods(rendered: Docs) -> None:
    docs = rendered["default"]
    assert len(objects(docs, "PodDisruptionBudget")) == len(STAGES)
    for stage in STAGES:
        pdb = one(docs, "PodDisruptionBudget", f"{RELEASE}-{stage}")
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert selects(selector, pod_labels(deployment(docs, stage)))
        others = [deployment(docs, s) for s in STAGES if s != stage]
        assert not any(selects(selector, pod_labels(d)) for d in others)


def test_probes_and_metrics_service_on_port_9100(rendered: Docs) -> None:
    docs = rendered["default"]
    for stage in STAGES:
        c = container(deployment(docs, stage))
        assert c["ports"] == [{"name": "metrics", "containerPort": 9100, "protocol": "TCP"}]
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        service = one(docs, "Service", f"{RELEASE}-{stage}-metrics")
        assert service["spec"]["ports"][0]["port"] == 9100
        assert selects(service["spec"]["selector"], pod_labels(deployment(docs, stage)))


def test_network_policy_per_stage(rendered: Docs) -> None:
    docs = rendered["default"]
    for stage in STAGES:
        policy = one(docs, "NetworkPolicy", f"{RELEASE}-{stage}")
        assert selects(
            policy["spec"]["podSelector"]["matchLabels"], pod_labels(deployment(docs, stage))
        )
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
        assert {53, 5672, 9000} <= ports
    broker = one(docs, "NetworkPolicy", f"{RELEASE}-rabbitmq")
    assert broker["spec"]["ingress"][0]["ports"][0]["port"] == 5672


# ---- contracts ----


def contract_env_names() -> set[str]:
    text = (ROOT / "docs" / "contracts.md").read_text(encoding="utf-8")
    section = text.split("## Environment variables", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`(COVIDCT_[A-Z0-9_]+)`", section))


def test_workers_get_every_contract_variable(rendered: Docs) -> None:
    names = contract_env_names()
    assert {"COVIDCT_AMQP_URL", "COVIDCT_MODEL_URI", "COVIDCT_INGEST_TRIGGER"} <= names
    for case in ("default", "external", "features"):
        docs = rendered[case]
        config = one(docs, "ConfigMap", f"{RELEASE}-config")["data"]
        for stage in STAGES:
            available = set(config) | set(env_of(deployment(docs, stage)))
            optional = {"COVIDCT_SELECTION_RULES"} if case != "features" else set()
            if stage == "ingest":
                optional |= {"COVIDCT_MODEL_URI"}
            assert names - optional <= available, (case, stage, names - optional - available)


def test_credentials_come_from_secrets(rendered: Docs) -> None:
    for case in ("default", "external"):
        docs = rendered[case]
        secrets = {s["metadata"]["name"] for s in objects(docs, "Secret")}
        for stage in STAGES:
            env = env_of(deployment(docs, stage))
            for name in ("COVIDCT_AMQP_URL", "COVIDCT_S3_ACCESS_KEY", "COVIDCT_S3_SECRET_KEY"):
                ref = env[name]["valueFrom"]["secretKeyRef"]
                if case == "default":
                    assert ref["name"] in secrets
                else:
                    assert ref["name"] in ("covidct-amqp", "covidct-s3")
    assert not objects(rendered["external"], "Secret")


def test_models_from_s3_use_a_verifying_init_container(chart: helm.Chart, rendered: Docs) -> None:
    docs = rendered["external"]
    values = chart.merge_values(case_values("external"))
    for stage in STAGES:
        spec = deployment(docs, stage)["spec"]["template"]["spec"]
        env = env_of(deployment(docs, stage))
        if stage == "ingest":
            assert "initContainers" not in spec and "COVIDCT_MODEL_URI" not in env
            continue
        model = values["models"][stage]
        (init,) = spec["initContainers"]
        args = init["command"]
        assert args[:2] == ["python", "/scripts/fetch_model.py"]
        assert args[args.index("--prefix") + 1] == f"models/{model['name']}/{model['version']}/"
        dest = args[args.index("--dest") + 1]
        assert env["COVIDCT_MODEL_URI"]["value"] == dest
        assert init["image"] == container(deployment(docs, stage))["image"]
    scripts = one(docs, "ConfigMap", f"{RELEASE}-scripts")
    assert "def verify_bundle" in scripts["data"]["fetch_model.py"]


def test_models_from_image_and_pvc(rendered: Docs) -> None:
    bundles = {"segment": ("lung_seg", "0.1.0"), "classify": ("covid_cls", "1.0.0")}
    for stage, (bundle, version) in bundles.items():
        image_env = env_of(deployment(rendered["default"], stage))
        assert image_env["COVIDCT_MODEL_URI"]["value"] == f"/models/{bundle}"
        pvc_doc = deployment(rendered["features"], stage)
        assert env_of(pvc_doc)["COVIDCT_MODEL_URI"]["value"] == f"/models/{bundle}/{version}"
        volumes = pvc_doc["spec"]["template"]["spec"]["volumes"]
        claim = next(v for v in volumes if v["name"] == "models")["persistentVolumeClaim"]
        assert claim == {"claimName": "covidct-models", "readOnly": True}


def test_bundled_minio_publishes_bucket_events_to_rabbitmq(rendered: Docs) -> None:
    docs = rendered["cpu"]
    minio = one(docs, "StatefulSet", f"{RELEASE}-minio")
    env = {e["name"]: e for e in minio["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MINIO_NOTIFY_AMQP_ENABLE_PRIMARY"]["value"] == "on"
    assert env["MINIO_NOTIFY_AMQP_EXCHANGE_PRIMARY"]["value"] == "minio-events"
    assert env["MINIO_NOTIFY_AMQP_EXCHANGE_TYPE_PRIMARY"]["value"] == "fanout"
    assert env["MINIO_NOTIFY_AMQP_DURABLE_PRIMARY"]["value"] == "on"
    assert env["MINIO_NOTIFY_AMQP_DELIVERY_MODE_PRIMARY"]["value"] == "2"
    url_ref = env["MINIO_NOTIFY_AMQP_URL_PRIMARY"]["valueFrom"]["secretKeyRef"]
    assert url_ref == {"name": f"{RELEASE}-rabbitmq", "key": "amqp-url"}
    job = one(docs, "Job", f"{RELEASE}-minio-setup")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    script = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert 'mc mb --ignore-existing "covidct/$INPUT_BUCKET"'.replace("mc ", "$MC ") in script
    assert "event add" in script and "arn:minio:sqs::PRIMARY:amqp --event put" in script
    image = job["spec"]["template"]["spec"]["containers"][0]["image"]
    assert re.fullmatch(r"minio/mc:RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ", image)


def test_external_values_render_no_bundled_infrastructure(rendered: Docs) -> None:
    docs = rendered["external"]
    assert not objects(docs, "StatefulSet") and not objects(docs, "Job")
    config = one(docs, "ConfigMap", f"{RELEASE}-config")["data"]
    assert config["COVIDCT_S3_ENDPOINT"] == "https://s3.eu-central-1.amazonaws.com"
    assert config["COVIDCT_INGEST_TRIGGER"] == "poll"
    ingest = one(docs, "ScaledObject", f"{RELEASE}-ingest")
    assert [t["metadata"]["queueName"] for t in ingest["spec"]["triggers"]] == ["covidct.ingest"]
    auth = one(docs, "TriggerAuthentication", f"{RELEASE}-rabbitmq")
    assert auth["spec"]["secretTargetRef"][0] == {
        "parameter": "host",
        "name": "covidct-amqp",
        "key": "management-url",
    }


def test_pinned_images(rendered: Docs) -> None:
    for _, spec in pod_specs(rendered["default"]):
        for c in spec["containers"] + spec.get("initContainers", []):
            repo, _, tag = c["image"].rpartition(":")
            assert repo and tag and tag != "latest", c["image"]
    rabbit = one(rendered["default"], "StatefulSet", f"{RELEASE}-rabbitmq")
    assert re.fullmatch(
        r"rabbitmq:3\.13\.\d+-management",
        rabbit["spec"]["template"]["spec"]["containers"][0]["image"],
    )
