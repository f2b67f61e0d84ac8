"""Where the real public CT series live inside the samples folder (never copied here)."""

from __future__ import annotations

from pathlib import Path


def series_dirs(samples: Path, collection: str) -> list[Path]:
    """Every folder under ``samples/collection`` that directly holds .dcm files, sorted."""
    root = samples / collection
    return sorted({p.parent for p in root.rglob("*.dcm")})


def tcia_series(samples: Path) -> list[Path]:
    """The 4 Lung-PET-CT-Dx series: A0001 (2 kernels, 64 slices), A0002 (2 kernels, 30)."""
    return series_dirs(samples, "tcia-lung-pet-ct-dx")


def small_tcia_series(samples: Path) -> Path:
    """A 30-slice A0002 series: the cheapest real chest CT for pipeline tests."""
    return next(p for p in tcia_series(samples) if "A0002" in str(p))


def lidc_series(samples: Path) -> Path:
    return series_dirs(samples, "lidc-idri-0001")[0]
