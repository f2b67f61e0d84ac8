"""``overview.png``: axial and coronal lung-window views with the mask outlined and the
probability, metrics and research-use notice written on them (pillow + numpy only).

Views are shown in radiological convention (patient right on the image left, anterior up,
head up) with square physical pixels, whatever the volume's direction and spacing.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from covidct_classify.metrics import OPACITY_MIN_HU
from covidct_classify.results import SeriesResult
from covidct_core import RESEARCH_USE_DISCLAIMER

LUNG_WINDOW = (-1350.0, 150.0)  # width 1500, level -600
VIEW_HEIGHT = 420
OUTLINE_RGB = (0, 230, 255)
TEXT_RGB = (255, 255, 255)
NOTICE_RGB = (255, 200, 0)
BACKGROUND_RGB = (0, 0, 0)
LINE_HEIGHT = 18


def _grey(values: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    low, high = LUNG_WINDOW
    scaled = (np.clip(values.astype(np.float32), low, high) - low) / (high - low) * 255.0
    return scaled.astype(np.uint8)


def _outline(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    edge: npt.NDArray[np.bool_] = mask & ~inner
    return edge


def _view(
    image: npt.NDArray[Any], mask: npt.NDArray[np.bool_], pixel_mm: tuple[float, float]
) -> Image.Image:
    """RGB view of a 2D slice (rows, cols) scaled to square pixels and VIEW_HEIGHT rows."""
    rgb = np.repeat(_grey(image)[:, :, None], 3, axis=2)
    rgb[_outline(mask)] = OUTLINE_RGB
    rows, cols = image.shape
    height_mm, width_mm = rows * pixel_mm[0], cols * pixel_mm[1]
    width = max(1, round(VIEW_HEIGHT * width_mm / height_mm))
    return Image.fromarray(rgb).resize((width, VIEW_HEIGHT), Image.Resampling.NEAREST)


def _oriented(array: npt.NDArray[Any], direction: tuple[float, ...]) -> npt.NDArray[Any]:
    """Flip ``(z, y, x)`` so x runs right->left of the patient, y anterior->posterior and z
    inferior->superior (LPS index order)."""
    out = array
    if direction[0] < 0:
        out = out[:, :, ::-1]
    if direction[4] < 0:
        out = out[:, ::-1, :]
    if direction[8] < 0:
        out = out[::-1, :, :]
    return out


def pick_slices(hu: npt.NDArray[Any], lung: npt.NDArray[np.bool_]) -> tuple[int, int]:
    """Axial slice with the most lung plus opacity, coronal slice through the lung centre."""
    opacity = lung & (hu >= OPACITY_MIN_HU)
    score = lung.sum(axis=(1, 2)) + 4 * opacity.sum(axis=(1, 2))
    axial = int(np.argmax(score))
    ys = np.nonzero(lung.any(axis=(0, 2)))[0]
    coronal = round(float(ys.mean())) if ys.size else hu.shape[1] // 2
    return axial, coronal


def render_overview(
    hu: npt.NDArray[Any],
    mask: npt.NDArray[Any],
    spacing: tuple[float, float, float],
    direction: tuple[float, ...],
    lines: Sequence[str],
    notice: str = RESEARCH_USE_DISCLAIMER,
) -> bytes:
    """PNG bytes of the two views with ``lines`` above them and ``notice`` below."""
    volume = _oriented(np.asarray(hu), direction)
    lung = _oriented(np.asarray(mask) > 0, direction)
    axial_index, coronal_index = pick_slices(volume, lung)
    axial = _view(volume[axial_index], lung[axial_index], (spacing[1], spacing[0]))
    coronal = _view(
        volume[::-1, coronal_index, :], lung[::-1, coronal_index, :], (spacing[2], spacing[0])
    )
    font = ImageFont.load_default(size=14)
    width = max(axial.width + coronal.width + 30, 700)
    notice_lines = _wrap(notice, width, font)
    header = 10 + LINE_HEIGHT * len(lines)
    height = header + 10 + VIEW_HEIGHT + 10 + LINE_HEIGHT * len(notice_lines) + 10
    canvas = Image.new("RGB", (width, height), BACKGROUND_RGB)
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((10, 8 + LINE_HEIGHT * i), line, fill=TEXT_RGB, font=font)
    top = header + 10
    canvas.paste(axial, (10, top))
    canvas.paste(coronal, (20 + axial.width, top))
    draw.text((14, top + 4), f"axial {axial_index}", fill=OUTLINE_RGB, font=font)
    draw.text((24 + axial.width, top + 4), f"coronal {coronal_index}", fill=OUTLINE_RGB, font=font)
    for i, line in enumerate(notice_lines):
        draw.text((10, top + VIEW_HEIGHT + 10 + LINE_HEIGHT * i), line, fill=NOTICE_RGB, font=font)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _wrap(text: str, width: int, font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> list[str]:
    words, lines, current = text.split(), [], ""
    for word in words:
        candidate = f"{current} {word}".strip()
        if font.getlength(candidate) <= width - 20 or not current:
            current = candidate
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    return lines


def result_lines(result: SeriesResult, mean_lung_hu: float) -> list[str]:
    """Header text for a result: probability, model, metrics and QA flags."""
    flags = ", ".join(result.qa_flags) if result.qa_flags else "none"
    return [
        f"P(COVID-19) = {result.probability_covid19:.3f}   model {result.classification_model}"
        f"   lung mask {result.segmentation_model}",
        f"lung volume {result.lung_volume_ml:.0f} mL   opacity (>= -700 HU) "
        f"{result.percent_opacity:.1f} %   high opacity (>= -200 HU) "
        f"{result.percent_high_opacity:.1f} %   mean lung HU {mean_lung_hu:.0f}",
        f"series {result.series_instance_uid}   QA flags: {flags}",
    ]
