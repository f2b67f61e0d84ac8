"""Mutated real objects never escape as anything but PermanentError (fixed seed)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from covidct_core.errors import PermanentError
from covidct_ingest.config import DEFAULT_CONFIG
from covidct_ingest.convert import convert_series
from covidct_ingest.headers import InstanceHeader, parse_header, parse_header_prefix

LENIENT = DEFAULT_CONFIG.with_changes(
    assembly={"min_slices": 1}, selection={"require_original": False}
)


def mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    where = rng.randrange(min(len(out), 6000))
    kind = rng.randrange(4)
    if kind == 0:
        for _ in range(rng.randint(1, 20)):
            out[rng.randrange(min(len(out), 6000))] = rng.randrange(256)
    elif kind == 1:
        del out[rng.randrange(len(out)) :]
    elif kind == 2:
        out[where:where] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    else:
        del out[where : where + rng.randint(1, 8)]
    return bytes(out)


def test_mutations_raise_only_permanent_errors(samples_dir: Path, a0002_files: list[Path]) -> None:
    sources = [
        a0002_files[0].read_bytes(),
        (samples_dir / "pydicom-data-ct/eCT_Supplemental.dcm").read_bytes(),
        (samples_dir / "lungmask-testdata/0.dcm").read_bytes(),
        next((samples_dir / "totalsegmentator-testdata/example_ct_dicom").iterdir()).read_bytes(),
    ]
    rng = random.Random(20240101)
    codes: set[str] = set()
    converted = 0
    for _ in range(150):
        data = mutate(rng.choice(sources), rng)
        try:
            assert isinstance(parse_header(data), InstanceHeader)
        except PermanentError as e:
            codes.add(e.code)
        try:
            parse_header_prefix(data[:65536], len(data))
        except PermanentError as e:
            codes.add(e.code)
        try:
            convert_series([("mutant", data)], LENIENT)
            converted += 1
        except PermanentError as e:
            codes.add(e.code)
    assert {"CORRUPT_FILE", "NOT_DICOM"} <= codes
    assert converted > 10


@pytest.mark.parametrize("size", [0, 1, 131, 132, 133, 300])
def test_tiny_objects(size: int, a0002_files: list[Path]) -> None:
    data = a0002_files[0].read_bytes()[:size]
    with pytest.raises(PermanentError) as err:
        parse_header(data)
    assert err.value.code in ("NOT_DICOM", "CORRUPT_FILE")
