"""The segment stage in-process on a LocalStore."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from covidct_core.errors import PermanentError
from covidct_core.messages import (
    MASK_READY,
    JobIdentity,
    Message,
    ModelRef,
    ObjectRef,
    series_ready,
    validate_message,
)
from covidct_core.stage import run_stage
from covidct_core.storage import LocalStore
from covidct_core.volume_io import Volume, read_mha_bytes, to_mha_bytes
from covidct_segment import classical
from covidct_segment.segmenters import (
    ClassicalSegmenter,
    ModelSegmenter,
    SegmentResult,
    SideTask,
)
from covidct_segment.stage import DISAGREEMENT_FLAG, SegmentStage, mask_key
from tests.segment.conftest import Phantom

JOB = "0123456789abcdef"


def put_series(store: LocalStore, volume: Volume, job_id: str = JOB) -> Message:
    data = to_mha_bytes(volume)
    info = store.put_bytes(f"volumes/{job_id}/image.mha", data)
    meta = store.put_bytes(f"volumes/{job_id}/series.json", b"{}")
    identity = JobIdentity(
        job_id, "1.2.3", "1.2.3.4", "corr-1", "2026-01-01T00:00:00.000Z", "ab" * 32
    )
    return series_ready(
        identity,
        ObjectRef(store.bucket, info.key, info.size, info.sha256 or ""),
        ObjectRef(store.bucket, meta.key, meta.size, meta.sha256 or ""),
        {"ingest_total_s": 1.5},
    )


class FixedSegmenter:
    """Returns a given mask and Dice (to test the stage's own logic)."""

    def __init__(self, mask: np.ndarray, score: float | None) -> None:
        self.mask = mask
        self.score = score
        self.model_ref = ModelRef("fixed", "1", "f" * 64)

    def segment(self, volume: Volume, beside: SideTask | None = None) -> SegmentResult:
        if beside is not None:
            beside()
        return SegmentResult(self.mask.astype(np.uint8), self.score, [], {"infer_s": 0.1})


def test_classical_stage_writes_mask_and_message(tmp_path: Path, phantom: Phantom) -> None:
    store = LocalStore(tmp_path, bucket="work")
    message = put_series(store, phantom.volume)
    stage = SegmentStage(store, ClassicalSegmenter())
    assert stage.accepts == ("covidct.series-ready/v1",)
    run = run_stage(stage, message, store)
    assert not run.reused
    [out] = run.outbound
    assert out.routing_key == "classify.request"
    validate_message(out.message, MASK_READY)
    body = out.message
    ref = classical_ref = body["segmentation_model"]
    assert ref["name"] == "classical"
    source = Path(classical.__file__).read_bytes()
    assert classical_ref["sha256"] == hashlib.sha256(source).hexdigest()
    key = mask_key(JOB, f"classical@{ref['version']}")
    assert body["mask"]["key"] == key
    data = store.get_bytes(key)
    assert hashlib.sha256(data).hexdigest() == body["mask"]["sha256"]
    mask = read_mha_bytes(data)
    assert mask.same_geometry(phantom.volume, tol=0.0)
    assert mask.array.dtype == np.uint8 and set(np.unique(mask.array)) == {0, 1}
    assert classical.dice(mask.array, phantom.lung) > 0.95
    voxel_ml = float(np.prod(phantom.volume.spacing)) / 1000
    assert body["lung_volume_ml"] == pytest.approx(mask.array.sum() * voxel_ml, abs=0.1)
    assert body["model_vs_classical_dice"] is None
    assert body["timings"]["ingest_total_s"] == 1.5 and body["timings"]["segment_total_s"] > 0
    assert (
        stage.completion_key(message)
        == f"done/segment/{JOB}/classical@{ref['version']}/record.json"
    )
    again = run_stage(stage, message, store)
    assert again.reused and again.outbound[0].message["message_id"] == body["message_id"]


def test_checksum_mismatch_is_permanent(tmp_path: Path, phantom: Phantom) -> None:
    store = LocalStore(tmp_path, bucket="work")
    message = put_series(store, phantom.volume)
    message["volume"]["sha256"] = "0" * 64
    with pytest.raises(PermanentError) as info:
        SegmentStage(store, ClassicalSegmenter()).handle(message)
    assert info.value.code == "CHECKSUM_MISMATCH"


class CorruptingStore(LocalStore):
    """Returns damaged bytes for the first ``bad_reads`` reads of the volume."""

    def __init__(self, root: Path, bad_reads: int, damage: str = "flip") -> None:
        super().__init__(root, bucket="work")
        self.bad_reads = bad_reads
        self.damage = damage
        self.volume_reads = 0

    def get_bytes(self, key: str) -> bytes:
        data = super().get_bytes(key)
        if not key.endswith("image.mha"):
            return data
        self.volume_reads += 1
        if self.volume_reads > self.bad_reads:
            return data
        if self.damage == "truncate":
            return data[: len(data) // 2]  # unreadable: parsing fails
        damaged = bytearray(data)
        damaged[-100] ^= 0xFF  # one voxel changed: parses, segments, fails the sha256
        return bytes(damaged)


class RecordingSegmenter(FixedSegmenter):
    def __init__(self, mask: np.ndarray) -> None:
        super().__init__(mask, 0.97)
        self.seen: list[Volume] = []

    def segment(self, volume: Volume, beside: SideTask | None = None) -> SegmentResult:
        self.seen.append(volume)
        return super().segment(volume, beside)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_read_is_redone_from_verified_bytes(
    tmp_path: Path, phantom: Phantom, damage: str
) -> None:
    """The sha256 is checked beside the segmentation: a result from damaged bytes (or an
    error they cause) is discarded, the volume read again and segmented again."""
    store = CorruptingStore(tmp_path, bad_reads=1, damage=damage)
    message = put_series(store, phantom.volume)
    segmenter = RecordingSegmenter(phantom.lung)
    [out] = SegmentStage(store, segmenter).handle(message)
    assert store.volume_reads == 2
    assert np.array_equal(segmenter.seen[-1].array, phantom.volume.array)
    assert len(segmenter.seen) == (2 if damage == "flip" else 1)
    assert out.message["lung_volume_ml"] > 0


def test_damaged_twice_is_permanent(tmp_path: Path, phantom: Phantom) -> None:
    store = CorruptingStore(tmp_path, bad_reads=2)
    message = put_series(store, phantom.volume)
    with pytest.raises(PermanentError) as info:
        SegmentStage(store, RecordingSegmenter(phantom.lung)).handle(message)
    assert info.value.code == "CHECKSUM_MISMATCH" and store.volume_reads == 2


def test_an_error_of_an_intact_volume_is_raised_as_is(tmp_path: Path, phantom: Phantom) -> None:
    class Failing(FixedSegmenter):
        def segment(self, volume: Volume, beside: SideTask | None = None) -> SegmentResult:
            raise PermanentError("NO_LUNG_FOUND", "the model found no lung in the volume")

    store = CorruptingStore(tmp_path, bad_reads=0)
    message = put_series(store, phantom.volume)
    with pytest.raises(PermanentError) as info:
        SegmentStage(store, Failing(phantom.lung, None)).handle(message)
    assert info.value.code == "NO_LUNG_FOUND" and store.volume_reads == 1


def test_low_dice_raises_qa_flag(tmp_path: Path, phantom: Phantom) -> None:
    store = LocalStore(tmp_path, bucket="work")
    message = put_series(store, phantom.volume)
    agree = SegmentStage(store, FixedSegmenter(phantom.lung, 0.97)).handle(message)[0].message
    disagree = SegmentStage(store, FixedSegmenter(phantom.lung, 0.62)).handle(message)[0].message
    assert DISAGREEMENT_FLAG not in agree["qa_flags"]
    assert DISAGREEMENT_FLAG in disagree["qa_flags"]
    assert disagree["model_vs_classical_dice"] == 0.62


def test_empty_mask_is_no_lung_found(tmp_path: Path, phantom: Phantom) -> None:
    store = LocalStore(tmp_path, bucket="work")
    message = put_series(store, phantom.volume)
    empty = np.zeros_like(phantom.lung)
    with pytest.raises(PermanentError) as info:
        SegmentStage(store, FixedSegmenter(empty, None)).handle(message)
    assert info.value.code == "NO_LUNG_FOUND"


def test_model_stage_on_flipped_phantom(
    tmp_path: Path, thick_flipped_phantom: Phantom, model_segmenter: ModelSegmenter
) -> None:
    store = LocalStore(tmp_path, bucket="work")
    message = put_series(store, thick_flipped_phantom.volume)
    [out] = SegmentStage(store, model_segmenter).handle(message)
    body = out.message
    assert body["segmentation_model"]["name"] == "lung_seg"
    stored = store.get_bytes(body["mask"]["key"])
    assert b"CompressedData = True" in stored[:1024]
    assert len(stored) < 0.1 * thick_flipped_phantom.volume.array.size
    mask = read_mha_bytes(stored)
    assert mask.same_geometry(thick_flipped_phantom.volume, tol=0.0)
    assert classical.dice(mask.array, thick_flipped_phantom.lung) >= 0.95
    assert body["model_vs_classical_dice"] >= 0.95
    assert DISAGREEMENT_FLAG not in body["qa_flags"]
