"""Patient-space geometry of image planes (pure numpy, no I/O).

ITK convention throughout: the direction matrix has the row cosine, the column cosine and the
slice normal (row x column) as its columns; positions and spacings are in (x, y, z) order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def plane_axes(orientation: Sequence[float]) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Unit row cosine, column cosine and slice normal from ImageOrientationPatient."""
    row = np.asarray(orientation[:3], dtype=np.float64)
    col = np.asarray(orientation[3:6], dtype=np.float64)
    row = row / np.linalg.norm(row)
    col = col / np.linalg.norm(col)
    normal = np.cross(row, col)
    norm = np.linalg.norm(normal)
    if norm < 1e-6:
        raise ValueError("row and column cosines are parallel")
    return row, col, normal / norm


def is_valid_orientation(orientation: Sequence[float], tol: float = 1e-3) -> bool:
    """Both cosines (nearly) unit length and (nearly) perpendicular."""
    row = np.asarray(orientation[:3], dtype=np.float64)
    col = np.asarray(orientation[3:6], dtype=np.float64)
    return bool(
        abs(np.linalg.norm(row) - 1) < 0.01
        and abs(np.linalg.norm(col) - 1) < 0.01
        and abs(float(row @ col)) < tol * 10
    )


def direction_matrix(orientation: Sequence[float]) -> FloatArray:
    """3x3 direction matrix with columns row, column, normal."""
    row, col, normal = plane_axes(orientation)
    return np.stack([row, col, normal], axis=1)


def direction_tuple(orientation: Sequence[float]) -> tuple[float, ...]:
    """The direction matrix as 9 floats, row-major (SimpleITK ``SetDirection`` order)."""
    return tuple(float(v) for v in direction_matrix(orientation).ravel())


def angle_from_axial_deg(orientation: Sequence[float]) -> float:
    """Angle in degrees between the slice normal and the patient z (feet-head) axis."""
    _, _, normal = plane_axes(orientation)
    return float(np.degrees(np.arccos(min(1.0, abs(float(normal[2]))))))


def project(positions: FloatArray, axis: FloatArray) -> FloatArray:
    """Signed distance of each position (n x 3) along ``axis``."""
    return np.asarray(positions @ axis, dtype=np.float64)


def angle_between_deg(a: FloatArray, b: FloatArray) -> float:
    cosine = float(a @ b) / float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(max(-1.0, min(1.0, cosine)))))
