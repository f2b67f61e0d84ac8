"""Series selection: reason codes and configurable rules from JSON or YAML."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from covidct_core.errors import ConfigError
from covidct_ingest.config import DEFAULT_CONFIG, load_config, parse_config_text
from covidct_ingest.headers import parse_header
from covidct_ingest.selection import select_series
from tests.ingest.fakes import stack

RULES = DEFAULT_CONFIG.selection


def code_of(headers, rules=RULES) -> str | None:  # type: ignore[no-untyped-def]
    decision = select_series(headers, rules)
    return None if decision is None else decision.code


def test_eligible_axial_ct() -> None:
    assert code_of(stack([0, 1, 2])) is None
    assert code_of(stack([0, 1], modality="")) is None  # CT inferred from the SOP class


def test_reason_codes() -> None:
    assert code_of(stack([0], modality="PT", sop_class_uid="1.2.840.10008.5.1.4.1.1.128")) == (
        "NOT_CT"
    )
    assert code_of(stack([0], image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))) == "LOCALIZER"
    assert code_of(stack([0], sop_class_uid="1.2.840.10008.5.1.4.1.1.7")) == "SECONDARY_CAPTURE"
    assert code_of(stack([0], series_description="Dose Report")) == "DOSE_REPORT"
    assert code_of(stack([0], modality="SR", sop_class_uid="1.2.840.10008.5.1.4.1.1.88.67")) == (
        "DOSE_REPORT"
    )
    assert code_of(stack([0], image_type=("DERIVED", "PRIMARY", "AXIAL"))) == "DERIVED_IMAGE"
    assert code_of(stack([0], image_type=("ORIGINAL", "SECONDARY", "AXIAL"))) == "DERIVED_IMAGE"
    coronal = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
    assert code_of(stack([0], image_orientation=coronal)) == "NOT_AXIAL"
    assert code_of(stack([0], has_pixel_data=False)) == "NOT_AN_IMAGE"


def test_axial_tolerance_and_low_dose_descriptions() -> None:
    angle = math.radians(25)
    tilted = (1.0, 0.0, 0.0, 0.0, math.cos(angle), -math.sin(angle))
    assert code_of(stack([0], image_orientation=tilted)) is None
    strict = replace(RULES, max_axial_deviation_deg=10.0)
    assert code_of(stack([0], image_orientation=tilted), strict) == "NOT_AXIAL"
    assert code_of(stack([0], series_description="Low dose chest 1.0")) is None


def test_rules_from_yaml_and_json(tmp_path: Path) -> None:
    text = """
selection:
  include_description: "(?i)chest|thorax"
  exclude_description: "(?i)mip"
  min_slice_thickness_mm: 0.5
  max_slice_thickness_mm: 3
  modalities: [ct]
assembly:
  min_slices: 2
  gantry_tilt: reject
"""
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    config = load_config(path)
    assert config.assembly.min_slices == 2 and config.assembly.gantry_tilt == "reject"
    rules = config.selection
    assert rules.modalities == ("CT",)
    assert code_of(stack([0], series_description="Chest 1.0"), rules) is None
    assert code_of(stack([0], series_description="Abdomen"), rules) == "EXCLUDED_BY_RULE"
    assert code_of(stack([0], series_description="Chest MIP"), rules) == "EXCLUDED_BY_RULE"
    assert code_of(stack([0], series_description="Chest", slice_thickness=5.0), rules) == (
        "EXCLUDED_BY_RULE"
    )
    assert code_of(stack([0], series_description="Chest", slice_thickness=0.3), rules) == (
        "EXCLUDED_BY_RULE"
    )
    as_json = parse_config_text(json.dumps({"selection": {"require_original": False}}))
    assert not as_json.selection.require_original
    assert code_of(stack([0], image_type=("DERIVED", "PRIMARY")), as_json.selection) is None
    assert load_config(None) == DEFAULT_CONFIG


@pytest.mark.parametrize(
    "text",
    [
        "selection: {unknown: 1}",
        "assembly: {gantry_tilt: maybe}",
        "assembly: {min_slices: two}",
        "assembly: {min_slices: 0}",
        "selection: {include_description: '(['}",
        "extra: {}",
        "[1, 2]",
    ],
)
def test_bad_config_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_config_text(text)


def test_real_philips_localizer_and_secondary_capture(samples_dir: Path) -> None:
    philips = samples_dir / "dcm-qa-ct/In/Philips/S21570"
    localizer = [parse_header(p.read_bytes()) for p in sorted((philips / "S1000").glob("I*"))]
    capture = [parse_header(p.read_bytes()) for p in sorted((philips / "S4010").glob("I*"))]
    assert code_of(localizer) == "LOCALIZER"
    assert code_of(capture) == "SECONDARY_CAPTURE"
