"""Generate charts/covidct/README.md from README.tpl.md and the `# --` comments of values.yaml.

A small stand-in for helm-docs: a comment line starting with `# --` directly above a key
documents that key (following `#` lines continue the text). A key is covered when it has
such a comment, or when it is a non-empty map whose every child is covered. The script
refuses (exit 1) to write a README while any value is undocumented.

    python scripts/chart_docs.py            # rewrite the README
    python scripts/chart_docs.py --check    # exit 1: README stale or a value undocumented
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "covidct"

KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\-/\"']+):(\s|$)")
DOC_START = re.compile(r"^\s*# -- ?(?P<text>.*)$")
DOC_MORE = re.compile(r"^\s*#(?: (?P<text>.*))?$")

Path_ = tuple[str, ...]


@dataclass(frozen=True)
class ValueDoc:
    path: Path_
    description: str
    value: Any

    @property
    def key(self) -> str:
        return ".".join(self.path)


def lookup(data: Any, path: Path_) -> tuple[bool, Any]:
    node = data
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def parse_comments(text: str) -> dict[Path_, str]:
    """Map each documented key path to its `# --` description."""
    data = yaml.safe_load(text) or {}
    docs: dict[Path_, str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] | None = None
    for line in text.splitlines():
        start = DOC_START.match(line)
        if start:
            pending = [start.group("text").strip()]
            continue
        more = DOC_MORE.match(line)
        if more:
            if pending is not None and more.group("text"):
                pending.append(more.group("text").strip())
            continue
        if not line.strip():
            pending = None
            continue
        match = KEY_LINE.match(line)
        if not match:
            pending = None
            continue
        indent = len(match.group("indent"))
        key = match.group("key").strip("\"'")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = (*(k for _, k in stack), key)
        parent_found, parent = lookup(data, path[:-1])
        found, _ = lookup(data, path)
        if not (parent_found and isinstance(parent, dict) and found):
            pending = None  # a key inside a list item or a block scalar
            continue
        stack.append((indent, key))
        if pending is not None:
            docs[path] = " ".join(p for p in pending if p)
        pending = None
    return docs


def undocumented(data: Any, docs: dict[Path_, str], path: Path_ = ()) -> list[str]:
    """Key paths that are neither documented nor maps of documented children."""
    if path and path in docs:
        return []
    if isinstance(data, dict) and data:
        missing: list[str] = []
        for key, value in data.items():
            missing.extend(undocumented(value, docs, (*path, str(key))))
        return missing
    return [".".join(path)] if path else []


def value_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def collect(text: str) -> tuple[list[ValueDoc], list[str]]:
    data = yaml.safe_load(text) or {}
    docs = parse_comments(text)
    values = []
    for path, description in docs.items():
        _, value = lookup(data, path)
        values.append(ValueDoc(path, description, value))
    return values, undocumented(data, docs)


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_readme(template: str, chart: dict[str, Any], values: list[ValueDoc]) -> str:
    rows = [
        f"| {v.key} | {value_type(v.value)} | `{cell(json.dumps(v.value))}` "
        f"| {cell(v.description)} |"
        for v in values
    ]
    return Template(template).substitute(
        version=chart["version"],
        appVersion=chart["appVersion"],
        kubeVersion=chart["kubeVersion"],
        description=" ".join(str(chart["description"]).split()),
        rows="\n".join(rows),
    )


def build(chart_dir: Path | None = None) -> tuple[str, list[str]]:
    chart_dir = chart_dir or CHART
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text(encoding="utf-8"))
    values, missing = collect((chart_dir / "values.yaml").read_text(encoding="utf-8"))
    template = (chart_dir / "README.tpl.md").read_text(encoding="utf-8")
    return render_readme(template, chart, values), missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the chart README from values.yaml.")
    parser.add_argument("--check", action="store_true", help="fail if the README is not current")
    args = parser.parse_args(argv)
    readme, missing = build()
    if missing:
        print("undocumented values (add a '# --' comment):", *missing, sep="\n  ")
        return 1
    target = CHART / "README.md"
    if args.check:
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current != readme:
            print(f"{target.relative_to(ROOT)} is stale: run python scripts/chart_docs.py")
            return 1
        return 0
    target.write_text(readme, encoding="utf-8")
    print(f"wrote {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
