"""The chart README is generated from values.yaml and documents every value."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from chart_render import ROOT


def load_chart_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chart_docs", ROOT / "scripts" / "chart_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["chart_docs"] = module
    spec.loader.exec_module(module)
    return module


chart_docs = load_chart_docs()


def test_readme_is_current_and_every_value_documented() -> None:
    readme, missing = chart_docs.build()
    assert missing == []
    current = (ROOT / "charts" / "covidct" / "README.md").read_text(encoding="utf-8")
    assert current == readme, "run: python scripts/chart_docs.py"


def test_readme_lists_stage_values() -> None:
    readme, _ = chart_docs.build()
    for stage in ("ingest", "segment", "classify"):
        assert f"| stages.{stage}.autoscaling.keda.enabled | bool | `true` |" in readme
    assert "| stages.segment.terminationGracePeriodSeconds | int | `600` |" in readme


def test_comments_map_to_nested_keys_and_lists_are_leaves() -> None:
    text = """\
# -- Top value.
top: 1
group:
  # -- A nested value
  # spread over two lines.
  inner: "x"
  # -- A list value.
  items:
    - name: a
      other: b
  block: |
    not: a key
"""
    docs = chart_docs.parse_comments(text)
    assert docs == {
        ("top",): "Top value.",
        ("group", "inner"): "A nested value spread over two lines.",
        ("group", "items"): "A list value.",
    }
    values, missing = chart_docs.collect(text)
    assert missing == ["group.block"]
    assert [v.key for v in values] == ["top", "group.inner", "group.items"]


def test_a_plain_comment_or_blank_line_does_not_document() -> None:
    text = "# just a note\na: 1\n# -- detached\n\nb: 2\nc:\n  # -- documented map\n  d: {}\n"
    _, missing = chart_docs.collect(text)
    assert missing == ["a", "b"]


def test_check_mode_reports_a_stale_readme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chart = tmp_path / "charts" / "covidct"
    chart.mkdir(parents=True)
    source = ROOT / "charts" / "covidct"
    for name in ("Chart.yaml", "values.yaml", "README.tpl.md"):
        (chart / name).write_text((source / name).read_text(encoding="utf-8"), encoding="utf-8")
    (chart / "README.md").write_text("old\n", encoding="utf-8")
    monkeypatch.setattr(chart_docs, "ROOT", tmp_path)
    monkeypatch.setattr(chart_docs, "CHART", chart)
    (chart / "values.yaml").write_text("# -- Only value.\nonly: 1\n", encoding="utf-8")
    assert chart_docs.main(["--check"]) == 1
    assert chart_docs.main([]) == 0
    assert "| only | int | `1` | Only value. |" in (chart / "README.md").read_text()
    assert chart_docs.main(["--check"]) == 0
