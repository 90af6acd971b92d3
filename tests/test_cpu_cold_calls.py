"""A block's cold first call: measured excess against the model's, from the suite's table."""

from __future__ import annotations

import dataclasses
import types

import pytest

from sim.cost.cpu import Residency, cpu_op_cost
from tests.cpu_fixtures import TOY_CAL, gemm_op
from validation.cpu_cold_calls import cold_excess, cold_sentence
from validation.cpu_fit import COLD, Point

SPEC = types.SimpleNamespace(cpu_calibration=TOY_CAL)


def _point(m, n, k, block, split="fit") -> Point:
    return Point(f"{m}x{n}x{k}", "gemm", split, (gemm_op(m, n, k),), Residency(), 1e-4,
                 cold_share=1 / block)


def test_the_excess_is_the_first_call_less_a_later_one_beside_the_models():
    points = [_point(8, 64, 64, 4), _point(16, 128, 64, 2), _point(4, 32, 32, 8)]
    first, rest = [30e-6, 50e-6, 10e-6], [5e-6, 10e-6, 2e-6]
    (key, (count, measured, model)), = cold_excess(points, first, rest, SPEC).items()
    assert (key, count, measured) == ("gemm fp32", 3, pytest.approx(25e-6))  # 25, 40, 8
    # the model's excess of each call: its cold pricing less its warm one (no rotation here)
    each = sorted(cpu_op_cost(p.ops[0], TOY_CAL, COLD).total_s
                  - cpu_op_cost(p.ops[0], TOY_CAL, p.residency).total_s for p in points)
    assert model == pytest.approx(each[1])
    assert TOY_CAL.gemm["fp32"].cold_call_s > 0 and model > TOY_CAL.gemm["fp32"].cold_call_s


def test_only_fit_points_with_both_times_and_a_block_of_two_calls_or_more_count():
    points = [_point(8, 64, 64, 4, split="heldout"), _point(8, 64, 64, 1),
              _point(8, 64, 64, 4), _point(8, 64, 64, 4),
              dataclasses.replace(_point(8, 64, 64, 4), kernel_only=True)]
    first = [30e-6, 30e-6, None, float("nan"), 30e-6]
    rest = [5e-6, 5e-6, 5e-6, 5e-6, 5e-6]
    assert cold_excess(points, first, rest, SPEC) == {}
    assert cold_sentence(points, first, rest, SPEC) == ""
    sentence = cold_sentence(points[2:3], [30e-6], [5e-6], SPEC)
    assert sentence.startswith(" A block's first (cold) call") and "measured 25.0 us" in sentence
