"""The segment stage: series-ready -> lung mask object -> mask-ready (classify.request).

Reads ``volumes/<job>/image.mha`` (size and sha256 verified against the message), segments
it, cross-checks against the classical mask, writes ``masks/<job>/<model>@<version>/lung.mha``
(uint8, lung = 1, exactly the volume's grid, zlib-compressed MetaImage) and returns the
mask-ready message.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import structlog

from covidct_core.errors import PermanentError
from covidct_core.messages import (
    SERIES_READY,
    Message,
    ObjectRef,
    SegmentationSummary,
    mask_ready,
    validate_message,
)
from covidct_core.stage import Outbound, completion_record_key
from covidct_core.storage import ObjectStore, sha256_bytes
from covidct_core.volume_io import Volume, read_mha_bytes, to_mha_bytes
from covidct_segment.segmenters import Segmenter, SegmentResult

log = structlog.get_logger()

STAGE_NAME = "segment"
NEXT_ROUTING_KEY = "classify.request"
DISAGREEMENT_FLAG = "SEG_CLASSICAL_DISAGREEMENT"
VOLUME_RANGE_FLAG = "SEG_LUNG_VOLUME_OUT_OF_RANGE"
DEFAULT_MIN_DICE = 0.9
PLAUSIBLE_LUNG_ML = (1500.0, 9000.0)
# masks are written zlib-compressed: a 512x512x300 mask shrinks from 79 MB to about 1 MB for
# a few tens of ms of CPU (all-zero stretches are nearly free, see covidct_core.sparse_zlib)
MASK_COMPRESS_LEVEL = 1


def mask_key(job_id: str, model_tag: str) -> str:
    return f"masks/{job_id}/{model_tag}/lung.mha"


def matches(data: bytes, ref: ObjectRef) -> bool:
    """Whether ``data`` has the size and sha256 that ``ref`` names."""
    return len(data) == ref.size and sha256_bytes(data) == ref.sha256


class SegmentStage:
    """Implements :class:`covidct_core.stage.Stage` for lung segmentation."""

    name = STAGE_NAME
    accepts = (SERIES_READY,)

    def __init__(
        self,
        store: ObjectStore,
        segmenter: Segmenter,
        clock: Callable[[], float] = time.perf_counter,
        min_dice: float = DEFAULT_MIN_DICE,
    ) -> None:
        self.store = store
        self.segmenter = segmenter
        self.clock = clock
        self.min_dice = min_dice

    def completion_key(self, message: Message) -> str | None:
        return completion_record_key(STAGE_NAME, message["job_id"], self.segmenter.model_ref.tag)

    def handle(self, message: Message) -> list[Outbound]:
        validate_message(message, SERIES_READY)
        started = self.clock()
        ref = ObjectRef.from_dict(message["volume"])
        volume, result, read_s = self._segment_verified(ref)
        if not result.mask.any():
            raise PermanentError("NO_LUNG_FOUND", "the segmentation is empty", [ref.key])

        write_started = self.clock()
        model = self.segmenter.model_ref
        key = mask_key(message["job_id"], model.tag)
        mask_volume = Volume(result.mask, volume.spacing, volume.origin, volume.direction)
        body = to_mha_bytes(mask_volume, MASK_COMPRESS_LEVEL)
        info = self.store.put_bytes(key, body, {"content-type": "application/octet-stream"})
        mask_ref = ObjectRef(self.store.bucket, key, info.size, info.sha256 or sha256_bytes(body))
        write_s = self.clock() - write_started

        lung_ml = float(np.count_nonzero(result.mask)) * float(np.prod(volume.spacing)) / 1000.0
        flags = self._qa_flags(result.classical_dice, lung_ml, result.qa_flags)
        timings = {f"segment_{k}": round(v, 4) for k, v in result.timings.items()}
        timings.update(
            segment_read_s=round(read_s, 4),
            segment_write_s=round(write_s, 4),
            segment_total_s=round(self.clock() - started, 4),
        )
        summary = SegmentationSummary(
            round(lung_ml, 1),
            None if result.classical_dice is None else round(result.classical_dice, 4),
            flags,
        )
        log.info(
            "mask_written",
            job_id=message["job_id"],
            model=model.tag,
            lung_ml=summary.lung_volume_ml,
            dice=summary.model_vs_classical_dice,
            qa_flags=flags,
        )
        return [Outbound(NEXT_ROUTING_KEY, mask_ready(message, mask_ref, model, summary, timings))]

    def _segment_verified(self, ref: ObjectRef) -> tuple[Volume, SegmentResult, float]:
        """Read and segment the volume while the segmenter checks its sha256 beside the
        post-processing (hashlib releases the GIL); nothing computed from bytes that fail the
        check is used. On a mismatch the volume is read again, checked first, and segmented
        again; a second mismatch is permanent. Returns (volume, result, read seconds)."""
        if ref.bucket != self.store.bucket:
            raise PermanentError(
                "INVALID_MESSAGE", f"volume is in bucket {ref.bucket!r}, not {self.store.bucket!r}"
            )
        started = self.clock()
        data = self.store.get_bytes(ref.key)
        read_s = self.clock() - started
        verdicts: list[bool] = []  # the segmenter's side task appends the check's outcome

        def intact() -> bool:
            return verdicts[0] if verdicts else matches(data, ref)

        try:
            volume = read_mha_bytes(data)
            result = self.segmenter.segment(volume, lambda: verdicts.append(matches(data, ref)))
        except Exception:
            if intact():
                raise  # an error of the intact volume itself
        else:
            if intact():
                return volume, result, read_s
        log.warning("volume_checksum_mismatch", key=ref.key, attempt=0, size=len(data))
        data = self.store.get_bytes(ref.key)
        if not matches(data, ref):
            log.warning("volume_checksum_mismatch", key=ref.key, attempt=1, size=len(data))
            raise PermanentError(
                "CHECKSUM_MISMATCH",
                f"{ref.key} does not match the size/sha256 in the message",
                [ref.key],
            )
        volume = read_mha_bytes(data)
        return volume, self.segmenter.segment(volume), read_s

    def _qa_flags(self, score: float | None, lung_ml: float, extra: list[str]) -> list[str]:
        flags = list(extra)
        if score is not None and score < self.min_dice:
            flags.append(DISAGREEMENT_FLAG)
        if not PLAUSIBLE_LUNG_ML[0] <= lung_ml <= PLAUSIBLE_LUNG_ML[1]:
            flags.append(VOLUME_RANGE_FLAG)
        return flags
