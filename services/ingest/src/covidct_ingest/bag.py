"""Turn a bag of files (any layout, names, zips, DICOMDIRs, junk) into per-series outcomes.

Every object is read once for its header; junk is reported per object and never blocks the
good series. Each series is then skipped (selection), converted, or rejected with a
PermanentError code. ``covidct run`` calls :func:`scan_bag` + :func:`iter_series_outcomes`
(streaming: one volume in memory at a time) or :func:`ingest_bag` (all at once).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import structlog

from covidct_core.errors import PermanentError
from covidct_ingest import codes
from covidct_ingest.archive import is_zip_bytes, is_zip_file, iter_zip_members
from covidct_ingest.config import DEFAULT_CONFIG, IngestConfig
from covidct_ingest.convert import ConversionResult, Instance, convert_series, read_instance_header
from covidct_ingest.grouping import SeriesGroup, group_series
from covidct_ingest.headers import InstanceHeader
from covidct_ingest.selection import SkipDecision, select_series
from covidct_ingest.sidecar import SkippedInstance

log = structlog.get_logger()

Status = Literal["converted", "skipped", "rejected"]
MAX_ARCHIVE_DEPTH = 2  # a zip inside a zip is expanded, deeper nesting is not


@dataclass(frozen=True, eq=False)
class SeriesOutcome:
    status: Status
    series_key: str
    job_id: str
    derived_identity: bool
    instance_count: int
    series_description: str
    code: str | None = None
    reason: str = ""
    inputs: tuple[str, ...] = ()
    result: ConversionResult | None = None


@dataclass(frozen=True)
class SeriesPlan:
    """One series found in a bag: its group, and why it is skipped (None = convert it)."""

    group: SeriesGroup
    skip: SkipDecision | None


@dataclass
class BagScan:
    """Headers of every usable object, the objects that were not usable, and the series."""

    instances: list[Instance] = field(default_factory=list)
    headers: list[InstanceHeader] = field(default_factory=list)
    unusable: list[SkippedInstance] = field(default_factory=list)
    plans: list[SeriesPlan] = field(default_factory=list)


@dataclass(frozen=True, eq=False)
class BagReport:
    outcomes: list[SeriesOutcome]
    unusable: list[SkippedInstance]


def collect_files(roots: Path | Sequence[Path]) -> list[Instance]:
    """Every regular file under ``roots`` (files or folders, any depth), sorted, keyed by path."""
    items: list[Instance] = []
    for root in [roots] if isinstance(roots, Path | str) else roots:
        root = Path(root)
        if root.is_file():
            items.append((root.name, root))
            continue
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(files):
                path = Path(folder) / name
                if path.is_file():
                    items.append((path.relative_to(root).as_posix(), path))
    return items


def _is_zip(source: bytes | Path) -> bool:
    return is_zip_bytes(source) if isinstance(source, bytes) else is_zip_file(source)


def _add_object(scan: BagScan, key: str, source: bytes | Path, depth: int = 0) -> None:
    """Parse one object into ``scan``; a zip archive adds its members (``archive!member``)."""
    try:
        header = read_instance_header(source)
    except PermanentError as e:
        if e.code == codes.NOT_DICOM and depth < MAX_ARCHIVE_DEPTH and _is_zip(source):
            try:
                for name, data in iter_zip_members(source):
                    _add_object(scan, f"{key}!{name}", data, depth + 1)
            except PermanentError as archive_error:
                scan.unusable.append(SkippedInstance(key, archive_error.code, archive_error.reason))
            return
        scan.unusable.append(SkippedInstance(key, e.code, e.reason))
        return
    scan.instances.append((key, source))
    scan.headers.append(header)


def plan_series(headers: Sequence[InstanceHeader], config: IngestConfig) -> list[SeriesPlan]:
    """Group headers into series and apply the selection rules to each."""
    plans = []
    for group in group_series(headers):
        members = [headers[i] for i in group.indices]
        plans.append(SeriesPlan(group, select_series(members, config.selection)))
    return plans


def scan_bag(sources: Iterable[Instance], config: IngestConfig = DEFAULT_CONFIG) -> BagScan:
    """Read the header of every object (zips expanded) and plan the series."""
    scan = BagScan()
    for key, source in sources:
        _add_object(scan, key, source)
    scan.plans = plan_series(scan.headers, config)
    if scan.unusable:
        log.info("bag_objects_unusable", count=len(scan.unusable))
    return scan


def _outcome(
    plan: SeriesPlan,
    scan: BagScan,
    status: Status,
    *,
    code: str | None = None,
    reason: str = "",
    inputs: tuple[str, ...] = (),
    result: ConversionResult | None = None,
) -> SeriesOutcome:
    group = plan.group
    first = scan.headers[group.indices[0]]
    return SeriesOutcome(
        status=status,
        series_key=group.series_key,
        job_id=group.job_id,
        derived_identity=group.derived_identity,
        instance_count=len(group.instance_keys),
        series_description=first.series_description,
        code=code,
        reason=reason,
        inputs=inputs,
        result=result,
    )


def iter_series_outcomes(
    scan: BagScan, config: IngestConfig = DEFAULT_CONFIG
) -> Iterator[SeriesOutcome]:
    """Convert (or skip, or reject) each series of a scanned bag, one at a time."""
    for plan in scan.plans:
        names = tuple(scan.instances[i][0] for i in plan.group.indices)
        if plan.skip is not None:
            log.info("series_skipped", series_key=plan.group.series_key, code=plan.skip.code)
            yield _outcome(
                plan, scan, "skipped", code=plan.skip.code, reason=plan.skip.reason, inputs=names
            )
            continue
        instances = [scan.instances[i] for i in plan.group.indices]
        headers = [scan.headers[i] for i in plan.group.indices]
        try:
            result = convert_series(instances, config, headers=headers, check_selection=False)
        except PermanentError as e:
            log.info("series_rejected", series_key=plan.group.series_key, code=e.code)
            yield _outcome(
                plan, scan, "rejected", code=e.code, reason=e.reason, inputs=tuple(e.inputs)
            )
            continue
        yield _outcome(plan, scan, "converted", inputs=names, result=result)


def ingest_bag(sources: Iterable[Instance], config: IngestConfig = DEFAULT_CONFIG) -> BagReport:
    """Scan and convert a whole bag of ``(name, bytes or local path)`` objects."""
    scan = scan_bag(sources, config)
    return BagReport(list(iter_series_outcomes(scan, config)), scan.unusable)


def ingest_paths(roots: Path | Sequence[Path], config: IngestConfig = DEFAULT_CONFIG) -> BagReport:
    """:func:`ingest_bag` over every file under ``roots`` (folders searched recursively)."""
    return ingest_bag(collect_files(roots), config)
