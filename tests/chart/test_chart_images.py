"""Static checks of the service Dockerfiles (they cannot be built on this machine)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from chart_render import CHART_DIR, ROOT, STAGES, values_file

MODELS = {"segment": "lung_seg", "classify": "covid_cls"}
PACKAGES = {
    "ingest": ["core", "services/ingest"],
    "segment": ["core", "services/segment"],
    "classify": ["core", "services/segment", "services/classify"],
}


def dockerfile(stage: str) -> str:
    return (ROOT / "services" / stage / "Dockerfile").read_text(encoding="utf-8")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def build_args(text: str) -> dict[str, str]:
    return dict(
        rest.split("=", 1) for word, rest in instructions(text) if word == "ARG" and "=" in rest
    )


@pytest.mark.parametrize("stage", STAGES)
def test_runtime_is_non_root_on_port_9100_with_the_contract_entrypoint(stage: str) -> None:
    steps = instructions(dockerfile(stage))
    runtime = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM") :]
    assert ("USER", "10001:10001") in runtime
    assert ("EXPOSE", "9100") in runtime
    assert ("ENTRYPOINT", f'["covidct-{stage}"]') in runtime
    assert runtime[0][1].endswith("AS runtime")


@pytest.mark.parametrize("stage", STAGES)
def test_base_images_are_pinned_by_version(stage: str) -> None:
    args = build_args(dockerfile(stage))
    images = [v for k, v in args.items() if k.endswith("_IMAGE")]
    assert images
    for image in images:
        name, _, tag = image.partition("@")[0].rpartition(":")
        assert name and re.search(r"\d+\.\d+", tag), image
    assert args["PYTHON_IMAGE"].startswith("python:3.11.")
    assert args["PYTHON_IMAGE"].split("@")[0].endswith("-slim-bookworm")
    if stage != "ingest":
        assert re.fullmatch(r"nvidia/cuda:12\.\d+\.\d+-runtime-ubuntu22\.04", args["CUDA_IMAGE"])


@pytest.mark.parametrize("stage", STAGES)
def test_torch_only_where_needed_and_pinned(stage: str) -> None:
    text = dockerfile(stage)
    runs = " ".join(rest for word, rest in instructions(text) if word == "RUN")
    requirements = re.findall(r"(?<![\w/.-])torch\S*", runs)
    if stage == "ingest":
        assert "torch" not in " ".join(rest for _, rest in instructions(text))
        return
    assert requirements == ["torch==2.13.0"], requirements
    assert "https://download.pytorch.org/whl/cpu" in text
    assert build_args(text)["VARIANT"] == "cuda"
    assert "FROM base-${VARIANT} AS base" in text


@pytest.mark.parametrize("stage", STAGES)
def test_copies_its_packages_and_model(stage: str) -> None:
    text = dockerfile(stage)
    copied = re.findall(r"^COPY (?!--from)(\S+)/ ", text, flags=re.MULTILINE)
    expected = PACKAGES[stage] + ([f"models/{MODELS[stage]}"] if stage in MODELS else [])
    assert copied == expected
    for package in PACKAGES[stage]:
        assert (ROOT / package).is_dir(), package
    if stage in MODELS:
        assert f"COVIDCT_MODEL_URI=/models/{MODELS[stage]}" in text


@pytest.mark.parametrize("stage", STAGES)
def test_dockerignore_sends_only_what_the_image_copies(stage: str) -> None:
    ignore = (ROOT / "services" / stage / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    lines = [line for line in ignore.splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*"
    included = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    expected = set(PACKAGES[stage]) | ({f"models/{MODELS[stage]}"} if stage in MODELS else set())
    assert included == expected


@pytest.mark.parametrize("stage", STAGES)
def test_entrypoint_is_a_console_script_of_the_package(stage: str) -> None:
    pyproject = ROOT / "services" / stage / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip(f"{pyproject.relative_to(ROOT)} not written yet")
    scripts = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"].get("scripts", {})
    assert f"covidct-{stage}" in scripts


def test_chart_images_match_the_dockerfiles() -> None:
    app_version = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())["appVersion"]
    values = values_file("values.yaml")
    for stage in STAGES:
        image = values["stages"][stage]["image"]
        assert Path(image["repository"]).name == f"covidct-{stage}"
        assert image["tag"] in ("", app_version)
