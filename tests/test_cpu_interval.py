"""Prediction intervals of the CPU sub-model (sim.cost.cpu_interval), by hand."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest

from sim.cost.cpu_interval import FRAMEWORK, category_interval, op_interval, result_interval
from sim.cost.opcost import OpCost
from sim.cpu_calibration import Interval
from sim.errors import InputError
from sim.result import SimResult
from tests.cpu_fixtures import TOY_CAL, gemm_op


def test_op_interval_scales_the_prediction_by_its_category_quantiles():
    cost = OpCost(1e-6, 9e-6, 0.0, "compute")
    assert op_interval(gemm_op(2, 2, 2), cost, TOY_CAL) == pytest.approx((8e-6, 12e-6))


def test_unknown_categories_take_the_pooled_interval():
    assert category_interval(TOY_CAL, "norm") == TOY_CAL.intervals["all"]


def test_no_intervals_is_an_error():
    with pytest.raises(InputError, match="no calibrated intervals"):
        category_interval(None, "gemm")


def _result(rows: list[tuple[str, float]]) -> SimResult:
    ops = pd.DataFrame({"category": [c for c, _ in rows], "crit_pre_s": 0.0,
                        "crit_calc_s": [t for _, t in rows], "crit_post_s": 0.0})
    return SimResult(ops=ops, total_s=sum(t for _, t in rows), hw="toy", hw_kind="cpu")


def test_result_interval_is_correlated_within_and_independent_across_categories():
    # gemm: 2 ops, 10 ms in all, [0.8, 1.2] -> middle 10, half-width 2
    # elementwise: 4 ms, [0.9, 1.3] -> middle 4.4, half-width 0.8
    result = _result([("gemm", 4e-3), ("gemm", 6e-3), ("elementwise", 4e-3)])
    low, high = result_interval(result, TOY_CAL)
    half = math.sqrt(2e-3**2 + 0.8e-3**2)
    assert (low, high) == pytest.approx((14.4e-3 - half, 14.4e-3 + half))


def test_one_category_gives_its_own_quantiles():
    low, high = result_interval(_result([("gemm", 1e-3), ("gemm", 1e-3)]), TOY_CAL)
    assert (low, high) == pytest.approx((1.6e-3, 2.4e-3))


def test_the_framework_part_of_t_pre_is_its_own_independent_source():
    # gemm 10 ms of kernels with 1 ms of t_pre, of which dispatch is 1 us (TOY_CAL) and the
    # framework term 999 us; framework interval [0.5, 1.5] -> middle 999 us, half-width 499.5
    cal = dataclasses.replace(TOY_CAL, intervals={**TOY_CAL.intervals,
                                                  FRAMEWORK: Interval(0.5, 1.5, 10)})
    ops = pd.DataFrame({"category": ["gemm"], "t_pre_s": [1e-3], "crit_pre_s": [1e-3],
                        "crit_calc_s": [10e-3], "crit_post_s": 0.0})
    result = SimResult(ops=ops, total_s=11e-3, hw="toy", hw_kind="cpu")
    kernels = 10e-3 + 1e-6  # gemm's share: [0.8, 1.2] -> middle itself, half-width 0.2 x
    half = math.sqrt((0.2 * kernels) ** 2 + (0.5 * 999e-6) ** 2)
    assert result_interval(result, cal) == pytest.approx((kernels + 999e-6 - half,
                                                          kernels + 999e-6 + half))
    # an older spec without the framework interval: all of t_pre scales with gemm's
    assert result_interval(result, TOY_CAL) == pytest.approx((0.8 * 11e-3, 1.2 * 11e-3))
