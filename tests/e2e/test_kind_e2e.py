"""End to end on a throwaway kind cluster: CPU images, the chart with values-cpu.yaml and
the bundled MinIO and RabbitMQ, one public CT series in, one result.csv out.

Needs Docker, kind and kubectl; skips with the reason otherwise. Slow (image builds
download torch): run it on purpose, `pytest -m e2e tests/e2e`. Set COVIDCT_E2E_KEEP=1 to
keep the cluster for debugging, COVIDCT_E2E_SKIP_BUILD=1 to reuse images already built.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(5400)]

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "charts" / "covidct"
STAGES = ("ingest", "segment", "classify")
GPU_STAGES = ("segment", "classify")
NAMESPACE = "covidct"
RELEASE = "covidct"
TAG = "e2e"
# The smallest complete chest CT among the documented samples (30 slices, 8 mm; TCIA
# Lung-PET-CT-Dx, CC BY 4.0), then LIDC-IDRI-0001 (133 slices; CC BY 3.0).
SERIES_CANDIDATES = (
    "tcia-lung-pet-ct-dx/Lung_Dx-A0002",
    "lidc-idri-0001/LIDC-IDRI-0001",
)
RESULT_TIMEOUT_S = 1800


def run(cmd: list[str], timeout: float = 1800, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, check=True, text=True, capture_output=True, timeout=timeout, cwd=ROOT, **kwargs
    )


def require_tools() -> None:
    for tool in ("docker", "kind", "kubectl"):
        if shutil.which(tool) is None:
            pytest.skip(
                f"{tool} is not installed: the kind end-to-end test needs docker, kind, kubectl"
            )
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["docker info failed"])[-1]
        pytest.skip(f"no usable Docker daemon ({reason})")


def sample_roots() -> list[Path]:
    roots = [Path(os.environ["COVIDCT_SAMPLES"])] if os.environ.get("COVIDCT_SAMPLES") else []
    return [*roots, ROOT.parent / "shared" / "data", ROOT / ".samples"]


def find_series() -> list[Path]:
    """The DICOM files of one series: the first series folder of the first sample found."""
    for root in sample_roots():
        for candidate in SERIES_CANDIDATES:
            base = root / candidate
            if not base.is_dir():
                continue
            folders = sorted({p.parent for p in base.rglob("*.dcm")})
            if folders:
                return sorted(folders[0].glob("*.dcm"))
    pytest.skip(
        "no CT series found: set COVIDCT_SAMPLES or run `make samples` "
        f"(looked for {SERIES_CANDIDATES} under {[str(r) for r in sample_roots()]})"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def kind_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require_tools()
    name = f"covidct-e2e-{uuid.uuid4().hex[:6]}"
    kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
    run(
        [
            "kind",
            "create",
            "cluster",
            "--name",
            name,
            "--kubeconfig",
            str(kubeconfig),
            "--wait",
            "180s",
        ]
    )
    try:
        build_and_load_images(name)
        yield kubeconfig
    finally:
        if not os.environ.get("COVIDCT_E2E_KEEP"):
            subprocess.run(["kind", "delete", "cluster", "--name", name], check=False, timeout=300)


def image_name(stage: str) -> str:
    return f"covidct-{stage}:{TAG}-cpu" if stage in GPU_STAGES else f"covidct-{stage}:{TAG}"


def build_and_load_images(cluster: str) -> None:
    for stage in STAGES:
        image = image_name(stage)
        if not os.environ.get("COVIDCT_E2E_SKIP_BUILD"):
            cmd = ["docker", "build", "-f", f"services/{stage}/Dockerfile", "-t", image]
            if stage in GPU_STAGES:
                cmd += ["--build-arg", "VARIANT=cpu"]
            run([*cmd, "."], timeout=3600, env={**os.environ, "DOCKER_BUILDKIT": "1"})
        run(["kind", "load", "docker-image", image, "--name", cluster], timeout=900)


def chart_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART_DIR / "values-cpu.yaml").read_text())
    for stage in STAGES:
        repository, tag = image_name(stage).split(":")
        image = {"repository": repository, "tag": tag, "pullPolicy": "Never"}
        values.setdefault("stages", {}).setdefault(stage, {})["image"] = image
    values["config"]["quietPeriod"] = 5
    return values


def install_chart(kubeconfig: Path) -> None:
    import helm_python as helm

    config = helm.Config(kubeconfig_path=kubeconfig, namespace=NAMESPACE)
    try:
        config.install(
            helm.Chart.load(CHART_DIR),
            RELEASE,
            chart_values(),
            namespace=NAMESPACE,
            create_namespace=True,
            wait="watcher",
            timeout=1200,
        )
    finally:
        config.close()


def wait_for_rollout(apps: Any, deadline: float) -> None:
    pending: list[str] = []
    while time.monotonic() < deadline:
        pending = []
        for d in apps.list_namespaced_deployment(NAMESPACE).items:
            if (d.status.available_replicas or 0) < (d.spec.replicas or 0):
                pending.append(f"deployment/{d.metadata.name}")
        for s in apps.list_namespaced_stateful_set(NAMESPACE).items:
            if (s.status.ready_replicas or 0) < (s.spec.replicas or 0):
                pending.append(f"statefulset/{s.metadata.name}")
        if not pending:
            return
        time.sleep(5)
    raise TimeoutError(f"not rolled out: {pending}")


def diagnostics(core: Any) -> str:
    """Pod phases, container states and log tails, for the failure message."""
    lines = []
    for pod in core.list_namespaced_pod(NAMESPACE).items:
        lines.append(f"--- pod {pod.metadata.name}: {pod.status.phase}")
        for status in pod.status.container_statuses or []:
            lines.append(f"    {status.name}: ready={status.ready} restarts={status.restart_count}")
            lines.append(f"    state={status.state}")
        for container in pod.spec.containers:
            with contextlib.suppress(Exception):
                log = core.read_namespaced_pod_log(
                    pod.metadata.name, NAMESPACE, container=container.name, tail_lines=60
                )
                lines.append(f"    log {container.name}:\n{log}")
    return "\n".join(lines)


@contextlib.contextmanager
def port_forward(kubeconfig: Path, service: str, port: int) -> Iterator[int]:
    local = free_port()
    proc = subprocess.Popen(
        ["kubectl", "--kubeconfig", str(kubeconfig), "-n", NAMESPACE, "port-forward",
         f"svc/{service}", f"{local}:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", local), 1):
                break
            if proc.poll() is not None:
                raise RuntimeError(
                    f"port-forward exited: {proc.stderr.read() if proc.stderr else ''}"
                )
            time.sleep(0.5)
        yield local
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def secret_value(core: Any, name: str, key: str) -> str:
    data = core.read_namespaced_secret(name, NAMESPACE).data
    return base64.b64decode(data[key]).decode()


def test_series_in_result_out(kind_cluster: Path) -> None:
    import boto3
    from kubernetes import client, config

    series = find_series()
    install_chart(kind_cluster)
    api = config.new_client_from_config(config_file=str(kind_cluster))
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    try:
        wait_for_rollout(apps, time.monotonic() + 900)
        access = secret_value(core, f"{RELEASE}-minio", "root-user")
        secret = secret_value(core, f"{RELEASE}-minio", "root-password")
        values = chart_values()
        input_bucket = values.get("config", {}).get("inputBucket", "covidct-input")
        work_bucket = values.get("config", {}).get("workBucket", "covidct-work")
        with port_forward(kind_cluster, f"{RELEASE}-minio", 9000) as local:
            s3 = boto3.client(
                "s3",
                endpoint_url=f"http://127.0.0.1:{local}",
                aws_access_key_id=access,
                aws_secret_access_key=secret,
                region_name="us-east-1",
            )
            prefix = f"e2e/{uuid.uuid4().hex[:8]}"
            for path in series:
                s3.upload_file(str(path), input_bucket, f"{prefix}/{path.name}")
            deadline = time.monotonic() + RESULT_TIMEOUT_S
            results: list[str] = []
            while time.monotonic() < deadline and not results:
                listing = s3.list_objects_v2(Bucket=work_bucket, Prefix="results/")
                keys = [o["Key"] for o in listing.get("Contents", [])]
                results = [k for k in keys if k.endswith("/result.csv")]
                time.sleep(5)
            assert results, f"no results/*/result.csv within {RESULT_TIMEOUT_S} s"
            csv_text = s3.get_object(Bucket=work_bucket, Key=results[0])["Body"].read().decode()
            rows = [line for line in csv_text.splitlines() if line.strip()]
            assert len(rows) >= 2, csv_text
            json_key = results[0].removesuffix("result.csv") + "result.json"
            result = json.loads(s3.get_object(Bucket=work_bucket, Key=json_key)["Body"].read())
            assert result
    except BaseException as e:
        raise AssertionError(f"{e}\n\n{diagnostics(core)}") from e
