"""Convert the instances of one series into an int16 HU volume and its ``series.json``.

:func:`convert_series` is pure: it takes instance bytes (or local paths) and a config, and
returns a :class:`ConversionResult` or raises :class:`PermanentError`. The caller writes
``volumes/<job_id>/image.mha`` (``covidct_core.volume_io.write_mha``) and ``series.json``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from covidct_core.errors import PermanentError
from covidct_core.volume_io import Volume
from covidct_ingest import codes
from covidct_ingest.assembly import AssemblyPlan, assemble_series
from covidct_ingest.config import DEFAULT_CONFIG, IngestConfig
from covidct_ingest.grouping import SeriesGroup, group_series
from covidct_ingest.headers import InstanceHeader, instance_key, parse_header, read_header_file
from covidct_ingest.pixels import is_native, native_dtype, stored_frames, write_hu
from covidct_ingest.resample import resample_z, shift_slice
from covidct_ingest.selection import select_series
from covidct_ingest.sidecar import SkippedInstance, build_series_json

log = structlog.get_logger()

InstanceSource = bytes | Path
Instance = tuple[str, InstanceSource]


@dataclass(frozen=True, eq=False)
class ConversionResult:
    volume: Volume
    series_json: dict[str, Any]
    job_id: str
    series_key: str
    derived_identity: bool
    instance_keys: tuple[str, ...]
    plan: AssemblyPlan


def load_bytes(source: InstanceSource) -> bytes:
    """The bytes of an instance held in memory or in a local file."""
    if isinstance(source, bytes | bytearray):
        return bytes(source)
    try:
        return Path(source).read_bytes()
    except OSError as e:
        raise PermanentError(codes.CORRUPT_FILE, f"cannot read file: {e.strerror}") from e


def read_instance_header(source: InstanceSource) -> InstanceHeader:
    """Header of one instance; the content hash is computed only when SOPInstanceUID is empty."""
    if isinstance(source, bytes | bytearray):
        header = parse_header(bytes(source), compute_sha256=False)
        if not header.sop_instance_uid:
            digest = hashlib.sha256(source).hexdigest()
            header = dataclasses.replace(header, content_sha256=digest)
        return header
    return read_header_file(Path(source))


def _with_key(error: PermanentError, key: str) -> PermanentError:
    return PermanentError(error.code, f"{key}: {error.reason}", [key, *error.inputs])


def _headers_for(instances: Sequence[Instance]) -> list[InstanceHeader]:
    headers = []
    for key, source in instances:
        try:
            headers.append(read_instance_header(source))
        except PermanentError as e:
            raise _with_key(e, key) from e
    return headers


class _Loader:
    """Instance bytes and hashes on demand (hashes cached; bytes never kept)."""

    def __init__(self, instances: Sequence[Instance], headers: Sequence[InstanceHeader]) -> None:
        self._instances = instances
        self._headers = headers
        self._hashes: dict[int, str] = {}

    def data(self, index: int) -> bytes:
        key, source = self._instances[index]
        try:
            return load_bytes(source)
        except PermanentError as e:
            raise _with_key(e, key) from e

    def view(self, index: int, buffer: list[bytearray]) -> memoryview:
        """The instance's bytes, read into the reusable ``buffer[0]`` when it is a file."""
        key, source = self._instances[index]
        if isinstance(source, bytes | bytearray):
            return memoryview(source)
        try:
            with Path(source).open("rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if len(buffer[0]) < size:
                    buffer[0] = bytearray(size)  # earlier views keep the old one alive
                count = handle.readinto(memoryview(buffer[0])[:size])
        except OSError as e:
            raise PermanentError(
                codes.CORRUPT_FILE, f"{key}: cannot read file: {e.strerror}", [key]
            ) from e
        return memoryview(buffer[0])[:count]

    def read_pixels_into(self, index: int, header: InstanceHeader, dest: npt.NDArray[Any]) -> bool:
        """Read native pixel bytes of a file straight into ``dest``; False if not possible."""
        key, source = self._instances[index]
        offset = header.pixel_data_offset
        if isinstance(source, bytes | bytearray) or offset is None or not is_native(header):
            return False
        try:
            with Path(source).open("rb") as handle:
                handle.seek(offset)
                count = handle.readinto(dest.data.cast("B"))
        except OSError as e:
            raise PermanentError(
                codes.CORRUPT_FILE, f"{key}: cannot read file: {e.strerror}", [key]
            ) from e
        if count != dest.nbytes:
            raise PermanentError(codes.CORRUPT_FILE, f"{key}: pixel data is truncated", [key])
        return True

    def content_hash(self, index: int) -> str:
        known = self._headers[index].content_sha256
        if known:
            return known
        if index not in self._hashes:
            self._hashes[index] = hashlib.sha256(self.data(index)).hexdigest()
        return self._hashes[index]


def _decode(
    plan: AssemblyPlan,
    headers: Sequence[InstanceHeader],
    loader: _Loader,
    names: Sequence[str],
    config: IngestConfig,
) -> npt.NDArray[np.int16]:
    """Decode every planned slice into int16 HU; errors name the object (``names``)."""
    n = len(plan.slices)
    shape = plan.output_shape if not plan.needs_resampling else (n, plan.rows, plan.columns)
    stack = np.empty(shape, dtype=np.int16)
    frames_cache: tuple[int, npt.NDArray[Any]] | None = None
    buffer = [bytearray()]
    scratch: npt.NDArray[Any] | None = None
    for k, ref in enumerate(plan.slices):
        header = headers[ref.instance]
        try:
            if not plan.needs_resampling and header.number_of_frames <= 1 and is_native(header):
                dest = stack[k].view(native_dtype(header))
                if loader.read_pixels_into(ref.instance, header, dest):
                    # Decode in place: the stored values already sit in the output slice.
                    conversion = config.conversion
                    write_hu(dest, stack[k], header, ref.slope, ref.intercept, conversion, dest)
                    continue
            if frames_cache is None or frames_cache[0] != ref.instance:
                data = loader.view(ref.instance, buffer)
                frames_cache = (ref.instance, stored_frames(data, header))
            raw = frames_cache[1][ref.frame]
            if scratch is None or scratch.shape != raw.shape or scratch.dtype != raw.dtype:
                scratch = np.empty_like(raw)
            write_hu(raw, stack[k], header, ref.slope, ref.intercept, config.conversion, scratch)
        except PermanentError as e:
            raise _with_key(e, names[ref.instance]) from e
    if plan.in_plane_shifts is not None:
        sheared = np.empty((n, *plan.output_shape[1:]), dtype=np.int16)
        for k, (shift_x, shift_y) in enumerate(plan.in_plane_shifts):
            shift_slice(stack[k], sheared[k], shift_x, shift_y, config.conversion.air_hu)
        stack = sheared
    if plan.target_distances is not None:
        stack = resample_z(stack, plan.distances, plan.target_distances)
    return stack


def convert_series(
    instances: Sequence[Instance],
    config: IngestConfig = DEFAULT_CONFIG,
    *,
    headers: Sequence[InstanceHeader] | None = None,
    check_selection: bool = True,
    skipped: Sequence[SkippedInstance] = (),
) -> ConversionResult:
    """Convert one series: ``instances`` are ``(name, bytes or local path)`` in any order.

    ``headers`` (same order) may be passed when already parsed. ``check_selection`` re-applies
    the selection rules (a skipped series then raises PermanentError with the skip code).
    Raises PermanentError for anything that can never convert.
    """
    if not instances:
        raise PermanentError(codes.TOO_FEW_SLICES, "no instances")
    parsed = list(headers) if headers is not None else _headers_for(instances)
    if len(parsed) != len(instances):
        raise PermanentError(codes.MIXED_SERIES, "headers and instances differ in number")
    groups = group_series(parsed)
    if len(groups) != 1:
        raise PermanentError(
            codes.MIXED_SERIES,
            f"instances belong to {len(groups)} series",
            [g.series_key for g in groups],
        )
    group: SeriesGroup = groups[0]
    if check_selection:
        skip = select_series(parsed, config.selection)
        if skip is not None:
            raise PermanentError(skip.code, skip.reason, [group.series_key])
    keys = [instance_key(h) for h in parsed]
    loader = _Loader(instances, parsed)
    plan = assemble_series(parsed, keys, config.assembly, loader.content_hash)
    stack = _decode(plan, parsed, loader, [name for name, _ in instances], config)
    volume = Volume(stack, plan.spacing, plan.origin, plan.direction)
    series_json = build_series_json(group, parsed, plan, volume, config, skipped)
    log.info(
        "series_converted",
        job_id=group.job_id,
        series_key=group.series_key,
        slices=int(stack.shape[0]),
        resampled=plan.needs_resampling,
    )
    return ConversionResult(
        volume=volume,
        series_json=series_json,
        job_id=group.job_id,
        series_key=group.series_key,
        derived_identity=group.derived_identity,
        instance_keys=group.instance_keys,
        plan=plan,
    )
