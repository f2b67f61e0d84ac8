"""Assembly decisions on hand-made headers: order, duplicates, gaps, spacing, tilt, checks."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import pytest

from covidct_core.errors import PermanentError
from covidct_ingest.assembly import AssemblyPlan, assemble_series
from covidct_ingest.config import AssemblyRules
from covidct_ingest.headers import InstanceHeader
from covidct_ingest.resample import resample_z, shift_slice
from tests.ingest.fakes import header, keys_of, stack

RULES = AssemblyRules(min_slices=3)


def unique_hash(index: int) -> str:
    return f"h{index}"


def plan_for(
    headers: Sequence[InstanceHeader],
    rules: AssemblyRules = RULES,
    content_hash: Callable[[int], str] = unique_hash,
) -> AssemblyPlan:
    return assemble_series(headers, keys_of(headers), rules, content_hash)


def rejection(
    headers: Sequence[InstanceHeader],
    rules: AssemblyRules = RULES,
    content_hash: Callable[[int], str] = unique_hash,
) -> PermanentError:
    with pytest.raises(PermanentError) as err:
        plan_for(headers, rules, content_hash)
    return err.value


def test_sorted_by_position_not_instance_number_or_input_order() -> None:
    headers = stack([10, 12, 14, 16, 18])
    shuffled = [headers[i] for i in (3, 0, 4, 2, 1)]
    # Instance numbers deliberately reversed against z.
    shuffled = [replace(h, instance_number=10 - i) for i, h in enumerate(shuffled)]
    plan = plan_for(shuffled)
    zs = [ref.position[2] for ref in plan.slices]
    assert zs == [10, 12, 14, 16, 18]
    assert plan.origin == (0.0, 0.0, 10.0)
    assert plan.spacing == (0.6, 0.5, 2.0)  # x = column spacing, y = row spacing
    assert plan.output_shape == (5, 8, 10)
    assert plan.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert not plan.needs_resampling


def test_descending_normal_and_oblique_orientation_are_kept() -> None:
    angle = math.radians(30)
    iop = (1.0, 0.0, 0.0, 0.0, math.cos(angle), math.sin(angle))
    normal = np.cross(iop[:3], iop[3:])
    headers = [
        header(
            sop_instance_uid=f"1.{i}",
            image_position=tuple(float(v) for v in normal * 3.0 * i),
            image_orientation=iop,
        )
        for i in range(4)
    ]
    plan = plan_for(headers[::-1])
    direction = np.array(plan.direction).reshape(3, 3)
    assert np.allclose(direction[:, 1], iop[3:])
    assert np.allclose(direction[:, 2], normal)
    assert plan.spacing[2] == pytest.approx(3.0)
    assert plan.origin == pytest.approx((0.0, 0.0, 0.0))


def test_exact_duplicates_are_dropped_conflicts_rejected() -> None:
    headers = stack([0, 2, 4, 6])
    copy = replace(headers[2])
    plan = plan_for([*headers, copy], content_hash=lambda i: "h2" if i in (2, 4) else f"h{i}")
    assert len(plan.slices) == 4
    assert plan.deduplicated == ("1.2.3.4.3",)
    assert plan.decisions[0].action == "deduplicated"
    other = header(sop_instance_uid="9.9.9", image_position=(0.0, 0.0, 4.0))
    error = rejection([*headers, other])
    assert error.code == "DUPLICATE_POSITION"
    assert "9.9.9" in error.inputs and "1.2.3.4.3" in error.inputs
    assert "9.9.9" in error.reason


def test_missing_slice_is_a_gap_listing_the_position() -> None:
    headers = stack([0, 2.5, 5, 7.5, 12.5, 15])
    error = rejection(headers)
    assert error.code == "SLICE_GAP"
    assert "10.00" in error.reason
    error = rejection(stack([-100, -97.5, -95, -87.5, -85]))
    assert error.code == "SLICE_GAP"
    assert "-92.50" in error.reason and "-90.00" in error.reason
    assert "2 missing" in error.reason


def test_variable_spacing_is_resampled_or_rejected() -> None:
    headers = stack([0, 1, 2, 3, 5, 7, 9])
    error = rejection(headers, AssemblyRules(min_slices=3, variable_spacing="reject"))
    assert error.code == "VARIABLE_SLICE_SPACING"
    plan = plan_for(headers, AssemblyRules(min_slices=3, resample_spacing="min"))
    assert plan.target_distances == tuple(float(i) for i in range(10))
    assert plan.spacing[2] == 1.0
    assert plan.output_shape[0] == 10
    assert plan.decisions[-1].code == "VARIABLE_SLICE_SPACING"
    plan = plan_for(headers, AssemblyRules(min_slices=3, resample_spacing=3.0))
    assert plan.target_distances == (0.0, 3.0, 6.0, 9.0)


def test_small_spacing_jitter_is_uniform() -> None:
    plan = plan_for(stack([0, 3.987, 7.975, 11.962, 15.949]))
    assert not plan.needs_resampling
    assert plan.spacing[2] == pytest.approx(15.949 / 4)


def test_gantry_tilt_is_sheared_onto_an_orthogonal_grid_or_rejected() -> None:
    tilt = math.radians(20)
    zs = [0, 5, 10, 15]
    offsets = [(0.0, -z * math.tan(tilt)) for z in zs]
    headers = stack(zs, normal_offsets=offsets, gantry_detector_tilt=20.0)
    error = rejection(headers, AssemblyRules(min_slices=3, gantry_tilt="reject"))
    assert error.code == "GANTRY_TILT"
    plan = plan_for(headers)
    assert plan.tilt_deg == pytest.approx(20.0)
    shifts = plan.in_plane_shifts
    assert shifts is not None
    # Slices move along y (row spacing 0.5 mm) by their offset relative to the lowest one.
    expected = [(off - offsets[-1][1]) / 0.5 for _, off in offsets]
    assert [s[1] for s in shifts] == pytest.approx(expected)
    assert all(s[0] == 0 for s in shifts)
    assert plan.output_shape == (4, 8 + math.ceil(expected[0]), 10)
    assert plan.origin == pytest.approx((0.0, offsets[-1][1], 0.0))
    assert plan.spacing[2] == pytest.approx(5.0)


def test_gantry_tag_without_geometric_tilt_is_only_noted() -> None:
    plan = plan_for(stack([0, 1, 2, 3], gantry_detector_tilt=15.0))
    assert not plan.needs_resampling
    assert plan.decisions[0].action == "noted"


def test_too_few_slices() -> None:
    error = rejection(stack([0, 1]))
    assert error.code == "TOO_FEW_SLICES"
    plan = plan_for(stack([4.0]), AssemblyRules(min_slices=1))
    assert plan.spacing[2] == 2.0  # slice thickness stands in for one slice


def test_instance_number_holes_and_images_in_acquisition() -> None:
    headers = stack([0, 1, 2, 3])
    headers[3] = replace(headers[3], instance_number=7)
    error = rejection(headers)
    assert error.code == "INCOMPLETE_SERIES"
    assert "5, 6" in error.reason
    lenient = AssemblyRules(min_slices=3, check_instance_numbers=False)
    assert len(plan_for(headers, lenient).slices) == 4
    error = rejection(stack([0, 1, 2, 3], images_in_acquisition=5))
    assert error.code == "INCOMPLETE_SERIES"
    assert len(plan_for(stack([0, 1, 2, 3], images_in_acquisition=4)).slices) == 4


def test_missing_and_inconsistent_geometry() -> None:
    headers = stack([0, 1, 2])
    assert rejection([*headers, header(sop_instance_uid="x", image_position=None)]).code == (
        "MISSING_GEOMETRY"
    )
    assert rejection([*headers[:2], header(sop_instance_uid="y", image_orientation=None)]).code == (
        "MISSING_GEOMETRY"
    )
    odd = header(sop_instance_uid="z", image_position=(0.0, 0.0, 3.0), rows=16)
    assert rejection([*headers, odd]).code == "INCONSISTENT_GEOMETRY"
    rotated = header(
        sop_instance_uid="r", image_position=(0.0, 0.0, 3.0), image_orientation=(0, 1, 0, 1, 0, 0)
    )
    assert rejection([*headers, rotated]).code == "INCONSISTENT_GEOMETRY"


def test_shift_slice_moves_content_exactly_and_linearly() -> None:
    src = np.arange(12, dtype=np.int16).reshape(3, 4) * 10
    out = np.zeros((5, 5), np.int16)
    shift_slice(src, out, 1.0, 2.0, fill=-1024)
    assert np.array_equal(out[2:, 1:], src)
    assert (out[:2] == -1024).all() and (out[:, 0] == -1024).all()
    half = np.zeros((3, 5), np.int16)
    shift_slice(src, half, 0.5, 0.0, fill=0)
    assert half[0, 1] == 5 and half[0, 2] == 15  # midway between neighbours


def test_resample_z_is_exact_at_nodes_and_linear_between() -> None:
    stack_ = np.stack([np.full((2, 2), v, np.int16) for v in (0, 10, 40)])
    out = resample_z(stack_, [0.0, 1.0, 3.0], [0.0, 0.5, 1.0, 2.0, 3.0])
    assert [int(s[0, 0]) for s in out] == [0, 5, 10, 25, 40]
