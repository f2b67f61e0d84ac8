"""Ingest configuration: series selection rules, assembly policies and HU conversion.

One file (JSON or YAML, named by ``COVIDCT_SELECTION_RULES``) holds up to three sections;
anything left out keeps its default::

    selection:
      modalities: [CT]
      require_original: true
      require_primary: true
      max_axial_deviation_deg: 30
      include_description: null      # regex on SeriesDescription (search, case-insensitive)
      exclude_description: "(?i)mip|minip|vrt"
      min_slice_thickness_mm: null
      max_slice_thickness_mm: 5.0
    assembly:
      min_slices: 16
      gantry_tilt: resample          # or reject
      variable_spacing: resample     # or reject
      resample_spacing: median       # median | min | <mm>
      check_instance_numbers: true
      check_images_in_acquisition: true
    conversion:
      air_hu: -1024
      map_padding_to_air: true
      clip_below_air: true
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from covidct_core.errors import ConfigError

Policy = Literal["resample", "reject"]


@dataclass(frozen=True)
class SelectionRules:
    modalities: tuple[str, ...] = ("CT",)
    require_original: bool = True
    require_primary: bool = True
    max_axial_deviation_deg: float | None = 30.0
    include_description: str | None = None
    exclude_description: str | None = None
    min_slice_thickness_mm: float | None = None
    max_slice_thickness_mm: float | None = None


@dataclass(frozen=True)
class AssemblyRules:
    min_slices: int = 16
    gantry_tilt: Policy = "resample"
    variable_spacing: Policy = "resample"
    resample_spacing: str | float = "median"
    check_instance_numbers: bool = True
    check_images_in_acquisition: bool = True
    # Two slices closer than this along the normal share one position.
    position_tolerance_mm: float = 0.01
    # Slice spacings within max(abs, rel * typical) of each other count as uniform.
    spacing_tolerance_mm: float = 0.02
    spacing_tolerance_rel: float = 0.01
    # In-plane slice offsets below this fraction of a pixel are ignored (no tilt).
    tilt_tolerance_px: float = 0.25
    max_output_voxels: int = 1024 * 1024 * 1024


@dataclass(frozen=True)
class ConversionRules:
    air_hu: int = -1024
    map_padding_to_air: bool = True
    clip_below_air: bool = True


@dataclass(frozen=True)
class IngestConfig:
    selection: SelectionRules = field(default_factory=SelectionRules)
    assembly: AssemblyRules = field(default_factory=AssemblyRules)
    conversion: ConversionRules = field(default_factory=ConversionRules)

    def with_changes(self, **sections: Mapping[str, Any]) -> IngestConfig:
        """A copy with some fields replaced, e.g. ``with_changes(assembly={"min_slices": 2})``."""
        merged = to_mapping(self)
        for name, values in sections.items():
            merged.setdefault(name, {}).update(values)
        return config_from_mapping(merged)


DEFAULT_CONFIG = IngestConfig()
_SECTIONS: dict[str, type[Any]] = {
    "selection": SelectionRules,
    "assembly": AssemblyRules,
    "conversion": ConversionRules,
}


_CUSTOM_CHECKED = frozenset(
    {
        "modalities",
        "resample_spacing",
        "include_description",
        "exclude_description",
        "gantry_tilt",
        "variable_spacing",
    }
)


def to_mapping(config: IngestConfig) -> dict[str, dict[str, Any]]:
    return {name: dataclasses.asdict(getattr(config, name)) for name in _SECTIONS}


def _coerce(section: str, name: str, value: Any, problems: list[str]) -> Any:
    where = f"{section}.{name}"
    if name == "modalities":
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            problems.append(f"{where} must be a list of strings")
            return ()
        return tuple(v.upper() for v in value)
    if name in {"gantry_tilt", "variable_spacing"}:
        if value not in ("resample", "reject"):
            problems.append(f"{where} must be 'resample' or 'reject'")
        return value
    if name == "resample_spacing":
        if value in ("median", "min"):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
        problems.append(f"{where} must be 'median', 'min' or a positive number")
        return value
    if name in {"include_description", "exclude_description"}:
        if value is not None:
            try:
                re.compile(value)
            except (re.error, TypeError) as e:
                problems.append(f"{where} is not a valid regex: {e}")
        return value
    return value


def _check_type(where: str, default: Any, value: Any, problems: list[str]) -> None:
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float) or default is None:
        ok = value is None or (isinstance(value, int | float) and not isinstance(value, bool))
    else:
        ok = True
    if not ok:
        problems.append(f"{where} has the wrong type ({type(value).__name__})")


def config_from_mapping(data: Mapping[str, Any]) -> IngestConfig:
    """Build a config from parsed JSON/YAML; unknown keys and bad values raise ConfigError."""
    problems: list[str] = []
    if not isinstance(data, Mapping):
        raise ConfigError(["ingest config must be a mapping of sections"])
    sections: dict[str, Any] = {}
    for section, cls in _SECTIONS.items():
        values = data.get(section) or {}
        if not isinstance(values, Mapping):
            problems.append(f"{section} must be a mapping")
            continue
        defaults = cls()
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for name, value in values.items():
            if name not in known:
                problems.append(f"unknown setting {section}.{name}")
                continue
            if name not in _CUSTOM_CHECKED:
                _check_type(f"{section}.{name}", getattr(defaults, name), value, problems)
            kwargs[name] = _coerce(section, name, value, problems)
        sections[section] = (cls, kwargs)
    problems.extend(f"unknown section {name}" for name in data if name not in _SECTIONS)
    if problems:
        raise ConfigError(problems)
    built = {name: cls(**kwargs) for name, (cls, kwargs) in sections.items()}
    if built["assembly"].min_slices < 1:
        raise ConfigError(["assembly.min_slices must be at least 1"])
    return IngestConfig(**built)


def parse_config_text(text: str) -> IngestConfig:
    """Parse JSON or YAML text (JSON is valid YAML, so YAML parsing covers both)."""
    try:
        data = json.loads(text)
    except ValueError:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError([f"ingest config is neither JSON nor YAML: {e}"]) from e
    return config_from_mapping(data or {})


def load_config(path: Path | str | None) -> IngestConfig:
    """The config in ``path`` (JSON or YAML), or the defaults when ``path`` is None or empty."""
    if path is None or str(path) == "":
        return DEFAULT_CONFIG
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([f"cannot read ingest config {path}: {e}"]) from e
    return parse_config_text(text)
