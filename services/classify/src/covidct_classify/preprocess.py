"""Clara-compatible classifier preprocessing: lung-box crop, resize, HU window, channels.

Arrays are indexed ``(z, y, x)`` like :class:`covidct_core.volume_io.Volume`; spacings are
``(x, y, z)`` in mm. The network input is channel-first with spatial axes ``(x, y, z)``
(``H x W x D = 192 x 192 x 64``), which is what MONAI's ITK/NIfTI loaders hand a Clara-style
bundle. Steps, in order:

1. crop to the bounding box of the lung mask, widened by ``margin_mm`` on every side and
   clamped to the volume;
2. resize the cropped HU values (trilinear) and the mask (nearest) to ``spatial_size``;
3. clip HU to ``hu_window`` and scale linearly to ``[0, 1]``;
4. stack channels: 1 = CT, 2 = CT + lung mask (0/1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from covidct_core.errors import PermanentError

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]

CLARA_SPATIAL_SIZE = (192, 192, 64)
CLARA_HU_WINDOW = (-1000.0, 500.0)
DEFAULT_MARGIN_MM = 10.0


@dataclass(frozen=True)
class PreprocessConfig:
    """What a bundle's ``network_data_format`` says about its input."""

    spatial_size: tuple[int, int, int] = CLARA_SPATIAL_SIZE
    hu_window: tuple[float, float] = CLARA_HU_WINDOW
    margin_mm: float = DEFAULT_MARGIN_MM
    in_channels: int = 2

    def __post_init__(self) -> None:
        if self.in_channels not in (1, 2):
            raise ValueError(f"in_channels must be 1 (CT) or 2 (CT + mask), not {self.in_channels}")
        if len(self.spatial_size) != 3 or min(self.spatial_size) < 1:
            raise ValueError(f"spatial_size must be 3 positive ints, not {self.spatial_size}")
        if self.hu_window[1] <= self.hu_window[0]:
            raise ValueError(f"hu_window must be increasing, not {self.hu_window}")

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> PreprocessConfig:
        """Read the input contract from a bundle's ``configs/metadata.json``."""
        image = metadata["network_data_format"]["inputs"]["image"]
        prep = metadata["network_data_format"].get("preprocessing", {})
        size = image.get("spatial_shape", CLARA_SPATIAL_SIZE)
        window = prep.get("hu_window", CLARA_HU_WINDOW)
        return cls(
            spatial_size=(int(size[0]), int(size[1]), int(size[2])),
            hu_window=(float(window[0]), float(window[1])),
            margin_mm=float(prep.get("margin_mm", DEFAULT_MARGIN_MM)),
            in_channels=int(image["num_channels"]),
        )

    def to_metadata(self) -> dict[str, Any]:
        """The ``preprocessing`` block written into a bundle's metadata."""
        return {
            "crop": "lung mask bounding box",
            "margin_mm": self.margin_mm,
            "spatial_axes": "xyz",
            "resize": {"image": "trilinear", "mask": "nearest"},
            "hu_window": list(self.hu_window),
            "scale_to": [0.0, 1.0],
        }


@dataclass(frozen=True)
class CroppedLungs:
    """HU values and mask cropped to the lung box and resized, still in ``(z, y, x)``."""

    hu: FloatArray
    mask: FloatArray
    spacing: tuple[float, float, float]
    box: tuple[slice, slice, slice]


def lung_bounding_box(
    mask: npt.NDArray[Any], spacing: tuple[float, float, float], margin_mm: float
) -> tuple[slice, slice, slice]:
    """``(z, y, x)`` slices of the mask's bounding box widened by ``margin_mm``."""
    nonzero = np.nonzero(mask)
    if len(nonzero[0]) == 0:
        raise PermanentError("NO_LUNG_FOUND", "the lung mask is empty", ["mask"])
    margins = (margin_mm / spacing[2], margin_mm / spacing[1], margin_mm / spacing[0])
    box = []
    for axis, indices in enumerate(nonzero):
        pad = int(np.ceil(margins[axis]))
        low = max(int(indices.min()) - pad, 0)
        high = min(int(indices.max()) + 1 + pad, mask.shape[axis])
        box.append(slice(low, high))
    return box[0], box[1], box[2]


def _resize(array: npt.NDArray[Any], size_zyx: tuple[int, int, int], mode: str) -> FloatArray:
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None]
    if mode == "trilinear":
        out = F.interpolate(tensor, size=size_zyx, mode="trilinear", align_corners=False)
    else:
        out = F.interpolate(tensor, size=size_zyx, mode="nearest-exact")
    return out[0, 0].numpy()


def crop_and_resize(
    hu: npt.NDArray[Any],
    mask: npt.NDArray[Any],
    spacing: tuple[float, float, float],
    config: PreprocessConfig,
) -> CroppedLungs:
    """Steps 1 and 2: crop to the lung box and resize HU (trilinear) and mask (nearest)."""
    if hu.shape != mask.shape:
        raise PermanentError(
            "MASK_GRID_MISMATCH", f"mask shape {mask.shape} != volume shape {hu.shape}"
        )
    box = lung_bounding_box(mask, spacing, config.margin_mm)
    size_x, size_y, size_z = config.spatial_size
    size_zyx = (size_z, size_y, size_x)
    cropped_hu = hu[box]
    cropped_mask = (mask[box] > 0).astype(np.float32)
    extent = cropped_hu.shape
    new_spacing = (
        spacing[0] * extent[2] / size_x,
        spacing[1] * extent[1] / size_y,
        spacing[2] * extent[0] / size_z,
    )
    return CroppedLungs(
        hu=_resize(cropped_hu, size_zyx, "trilinear"),
        mask=_resize(cropped_mask, size_zyx, "nearest"),
        spacing=new_spacing,
        box=box,
    )


def window_hu(hu: npt.NDArray[Any], window: tuple[float, float]) -> FloatArray:
    """Step 3: clip HU to ``window`` and scale to ``[0, 1]``."""
    low, high = window
    clipped = np.clip(np.asarray(hu, dtype=np.float32), low, high)
    return ((clipped - low) / (high - low)).astype(np.float32)


def network_input(
    hu_zyx: npt.NDArray[Any], mask_zyx: npt.NDArray[Any], config: PreprocessConfig
) -> FloatArray:
    """Step 3 and 4 on resized arrays: ``(C, x, y, z)`` float32 in ``[0, 1]``."""
    image = window_hu(hu_zyx, config.hu_window).transpose(2, 1, 0)
    channels = [image]
    if config.in_channels == 2:
        channels.append((np.asarray(mask_zyx) > 0.5).astype(np.float32).transpose(2, 1, 0))
    return np.ascontiguousarray(np.stack(channels, axis=0), dtype=np.float32)


def preprocess(
    hu: npt.NDArray[Any],
    mask: npt.NDArray[Any],
    spacing: tuple[float, float, float],
    config: PreprocessConfig,
) -> FloatArray:
    """All four steps: a ``(C, x, y, z)`` network input from a ``(z, y, x)`` volume + mask."""
    cropped = crop_and_resize(hu, mask, spacing, config)
    return network_input(cropped.hu, cropped.mask, config)
