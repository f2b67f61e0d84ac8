"""Series keys, derived identities and deterministic job ids."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from covidct_ingest.grouping import (
    compute_job_id,
    group_series,
    instance_set_sha256,
    series_key_of,
)
from covidct_ingest.headers import parse_header
from tests.ingest.fakes import header, stack


def test_groups_by_series_uid_with_sorted_unique_keys() -> None:
    first = stack([0, 1, 2])
    second = stack([0, 1], series_instance_uid="9.9")
    second = [replace(h, sop_instance_uid="9.9." + h.sop_instance_uid) for h in second]
    headers = [second[1], first[2], first[0], second[0], first[1], first[0]]
    groups = group_series(headers)
    assert [g.series_key for g in groups] == ["1.2.3.4", "9.9"]
    assert groups[0].indices == (1, 2, 4, 5)
    assert groups[0].instance_keys == ("1.2.3.4.1", "1.2.3.4.2", "1.2.3.4.3")
    assert not groups[0].derived_identity
    assert groups[0].instance_set_sha256 == instance_set_sha256(groups[0].instance_keys)


def test_job_id_is_deterministic_and_changes_with_one_more_slice() -> None:
    keys = ["1.2.3.4.2", "1.2.3.4.1", "1.2.3.4.3"]
    job = compute_job_id("1.2.3.4", keys)
    assert len(job) == 16 and int(job, 16) >= 0
    assert compute_job_id("1.2.3.4", list(reversed(keys))) == job
    assert compute_job_id("1.2.3.4", [*keys, keys[0]]) == job  # duplicates collapse
    assert compute_job_id("1.2.3.4", [*keys, "1.2.3.4.4"]) != job
    assert compute_job_id("1.2.3.5", keys) != job
    assert instance_set_sha256(keys) == instance_set_sha256(sorted(keys))


def test_derived_identity_when_uids_are_empty() -> None:
    base = header(series_instance_uid="", study_instance_uid="", content_sha256="ab" * 32)
    key, derived = series_key_of(base)
    assert derived and key.startswith("derived-")
    assert series_key_of(replace(base, image_position=(1.0, 2.0, 3.0)))[0] == key
    assert series_key_of(replace(base, convolution_kernel="B70f"))[0] != key
    assert series_key_of(replace(base, rows=16))[0] != key
    groups = group_series([base, replace(base, content_sha256="cd" * 32)])
    assert len(groups) == 1 and groups[0].derived_identity
    assert groups[0].instance_keys == ("sha256-" + "ab" * 32, "sha256-" + "cd" * 32)


def test_derived_identity_of_the_real_empty_uid_series(samples_dir: Path) -> None:
    files = sorted((samples_dir / "totalsegmentator-testdata/example_ct_dicom").iterdir())
    headers = [parse_header(p.read_bytes()) for p in files]
    groups = group_series(headers)
    assert len(groups) == 1
    assert groups[0].derived_identity
    assert len(groups[0].instance_keys) == 20
    again = group_series(list(reversed(headers)))
    assert again[0].job_id == groups[0].job_id
    assert again[0].series_key == groups[0].series_key
