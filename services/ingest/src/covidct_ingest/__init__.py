"""covidct ingest stage: DICOM instances -> validated int16 HU volume. Research use only.

Pure functions (no broker, no S3); the worker and the CLI call:

* per object: :func:`parse_header_prefix` (ranged GET) or :func:`parse_header`, then
  :func:`series_key_of` / :func:`instance_key` / :func:`header_to_json` for the index;
* per series check: :func:`plan_series` (grouping + selection, deterministic ``job_id``);
* per job: :func:`convert_series` -> :class:`ConversionResult` (volume + ``series.json``);
* for a local bag of files: :func:`ingest_paths` / :func:`ingest_bag`, or
  :func:`scan_bag` + :func:`iter_series_outcomes` to stream one volume at a time.
"""

from covidct_ingest.bag import (
    BagReport,
    BagScan,
    SeriesOutcome,
    SeriesPlan,
    collect_files,
    ingest_bag,
    ingest_paths,
    iter_series_outcomes,
    plan_series,
    scan_bag,
)
from covidct_ingest.config import DEFAULT_CONFIG, IngestConfig, load_config, parse_config_text
from covidct_ingest.convert import ConversionResult, convert_series, read_instance_header
from covidct_ingest.grouping import (
    SeriesGroup,
    compute_job_id,
    group_series,
    instance_set_sha256,
    series_key_of,
)
from covidct_ingest.headers import (
    PREFIX_SIZE,
    InstanceHeader,
    header_from_json,
    header_to_json,
    instance_key,
    parse_header,
    parse_header_prefix,
    read_header_file,
)

__all__ = [
    "DEFAULT_CONFIG",
    "PREFIX_SIZE",
    "BagReport",
    "BagScan",
    "ConversionResult",
    "IngestConfig",
    "InstanceHeader",
    "SeriesGroup",
    "SeriesOutcome",
    "SeriesPlan",
    "collect_files",
    "compute_job_id",
    "convert_series",
    "group_series",
    "header_from_json",
    "header_to_json",
    "ingest_bag",
    "ingest_paths",
    "instance_key",
    "instance_set_sha256",
    "iter_series_outcomes",
    "load_config",
    "parse_config_text",
    "parse_header",
    "parse_header_prefix",
    "plan_series",
    "read_header_file",
    "read_instance_header",
    "scan_bag",
    "series_key_of",
]
