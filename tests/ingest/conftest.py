"""Fixtures for the ingest tests: real sample series, random-name views of them, SITK refs."""

from __future__ import annotations

import os
import random
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from tests.samples import series_dirs, small_tcia_series


def dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix == ".dcm")


@pytest.fixture(scope="session")
def a0002_dir(samples_dir: Path) -> Path:
    """A0002 B70f: 30 slices, 8 mm, Siemens, explicit VR (the cheapest real chest CT)."""
    return small_tcia_series(samples_dir)


@pytest.fixture(scope="session")
def a0002_files(a0002_dir: Path) -> list[Path]:
    return dicom_files(a0002_dir)


@pytest.fixture(scope="session")
def tcia_dirs(samples_dir: Path) -> list[Path]:
    dirs = series_dirs(samples_dir, "tcia-lung-pet-ct-dx")
    assert len(dirs) == 4
    return dirs


@pytest.fixture(scope="session")
def lidc_dir(samples_dir: Path) -> Path:
    return series_dirs(samples_dir, "lidc-idri-0001")[0]


def link_randomly(files: Sequence[Path], dest: Path, rng: random.Random, depth: int = 2) -> None:
    """Symlink ``files`` under ``dest`` with random names (no extension), shuffled, nested."""
    shuffled = list(files)
    rng.shuffle(shuffled)
    for path in shuffled:
        folder = dest.joinpath(*(secrets.token_hex(2) for _ in range(rng.randint(0, depth))))
        folder.mkdir(parents=True, exist_ok=True)
        os.symlink(path, folder / secrets.token_hex(6))


@pytest.fixture
def random_view(tmp_path: Path) -> Callable[..., Path]:
    """``random_view(files, ...)``: a folder of randomly named, nested links to ``files``."""
    counter = iter(range(1000))

    def make(*file_lists: Sequence[Path], seed: int = 7) -> Path:
        dest = tmp_path / f"bag{next(counter)}"
        dest.mkdir()
        rng = random.Random(seed)
        for files in file_lists:
            link_randomly(files, dest, rng)
        return dest

    return make


def sitk_series(folder: Path) -> sitk.Image:
    """SimpleITK's ImageSeriesReader over the (only) series in ``folder``."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def sitk_int16(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image).astype(np.int16)
