"""In-situ fit points: the GEMM and attention ops of captured steps, timed inside them."""

from __future__ import annotations

import dataclasses
import types

import pytest

from sim.cost.cpu import Residency, cpu_op_cost
from sim.trace import Op, Trace
from tests.cpu_fixtures import MIB, TOY_CAL, gemm_op
from validation.cpu_fit import Point, fit_gemm, load_points, predict_points
from validation.cpu_in_situ import IN_SITU_FAMILY, in_situ_rows, kernel_times


def _step(times_us: dict[str, list[float]], views_us=(0.8, 1.0, 0.9),
          timer="dispatcher") -> Trace:
    """A captured step: its views, then GEMMs of the given shapes and measured times."""
    ops = [Op(id=i, name="aten::view", category="view", measured_s=t * 1e-6)
           for i, t in enumerate(views_us)]
    shapes = {"small": (64, 128, 128), "large": (64, 1024, 128), "tiny": (1, 4, 16)}
    for name, times in times_us.items():
        ops += [dataclasses.replace(gemm_op(*shapes[name]), id=len(ops) + i, measured_s=t * 1e-6)
                for i, t in enumerate(times)]
    return Trace(tuple(ops), {"mode": "real", "op_timer": timer})


def _capture(trace: Trace):
    return types.SimpleNamespace(trace=trace, wall_s=1e-3, state=0.0)


def test_an_ops_kernel_time_is_its_median_less_the_steps_no_kernel_time():
    times = kernel_times(_step({"small": [20.9, 30.9, 22.9]}).ops)  # views: median 0.9 us
    ((op, kernel_s),) = times.values()
    assert op.attrs == {"b": 1, "m": 64, "n": 128, "k": 128}
    assert kernel_s == pytest.approx(22.0e-6)


def test_rows_take_the_median_over_captures_and_drop_what_the_timer_cannot_resolve():
    captures = {("toy", "prefill", 64): [
        _capture(_step({"small": [20.9], "large": [100.9], "tiny": [1.5]})),
        _capture(_step({"small": [24.9], "large": [102.9], "tiny": [1.6]})),
        _capture(_step({"small": [22.9], "large": [110.9], "tiny": [1.4]})),
        _capture(_step({"small": [1e3]}, timer="python"))]}  # the recorder's own times: no
    rows = in_situ_rows(captures).set_index("shape")
    assert len(rows) == 2  # the 0.6 us GEMM is below MIN_KERNEL_S
    small = rows.loc['{"b": 1, "k": 128, "m": 64, "n": 128}']
    assert small["measured_s"] == pytest.approx(22.0e-6)
    assert small["num_samples"] == 3
    assert small["family"] == IN_SITU_FAMILY and small["split"] == "fit"
    large = rows.loc['{"b": 1, "k": 128, "m": 64, "n": 1024}']
    assert large["measured_s"] == pytest.approx(102.0e-6)
    # the step's weights: 128 x 128 + 1024 x 128 + 4 x 16 fp32, each read once per step
    assert large["weight_reuse_bytes"] == (128 * 128 + 1024 * 128 + 4 * 16) * 4


def test_an_in_situ_point_is_warm_and_priced_by_its_t_calc_alone():
    captures = {("toy", "prefill", 64): [_capture(_step({"small": [22.9]}))]}
    (point,) = load_points(in_situ_rows(captures))
    assert point.kernel_only
    assert point.calls() == ((1.0, point.residency),)  # no cold or evicted calls
    spec = types.SimpleNamespace(cpu_calibration=TOY_CAL)
    (predicted,) = predict_points([point], spec)  # type: ignore[arg-type]
    assert predicted == pytest.approx(cpu_op_cost(point.ops[0], TOY_CAL, point.residency)
                                      .t_calc_s)


def test_in_situ_points_pin_the_warm_terms_that_cold_suite_points_confound():
    # suite points all run with the same cold share: alone they cannot tell the cold call
    # from a fixed overhead; warm kernel-only points (in situ) can
    truth = dataclasses.replace(TOY_CAL.gemm["fp32"], overhead_s=3e-6, cold_call_s=20e-6)
    cal = dataclasses.replace(TOY_CAL, gemm={"fp32": truth})
    shapes = [(m, n, k) for m in (8, 32, 64, 200) for n in (64, 256, 700) for k in (64, 384)]

    def measured(point: Point) -> Point:
        seconds = predict_points([point], types.SimpleNamespace(cpu_calibration=cal))[0]
        return dataclasses.replace(point, measured_s=float(seconds))

    suite = [measured(Point(f"s{i}", "gemm", "fit", (gemm_op(*s),), Residency(), 0.0,
                            cold_share=0.25)) for i, s in enumerate(shapes)]
    in_situ = [measured(Point(f"i{i}", "gemm", "fit", (gemm_op(*s),),  # weights: llc or dram
                              Residency(weight_reuse_bytes=MIB * 64 ** (i % 2)), 0.0,
                              kernel_only=True))
               for i, s in enumerate(shapes[::2])]
    start = dataclasses.replace(TOY_CAL, gemm={"fp32": dataclasses.replace(
        truth, overhead_s=1e-5, cold_call_s=1e-6, a_element_s=2e-10)})
    fitted = fit_gemm(suite + in_situ, start, "fp32")
    assert fitted.overhead_s == pytest.approx(3e-6, rel=1e-3)
    assert fitted.cold_call_s == pytest.approx(20e-6, rel=1e-3)


def test_in_situ_points_together_weigh_as_much_as_the_suites():
    from validation.cpu_fit import _weights

    suite = Point("s", "gemm", "fit", (gemm_op(8, 8, 8),), Residency(), 1e-6)
    in_situ = dataclasses.replace(suite, kernel_only=True)
    rows = [(suite, None)] * 6 + [(in_situ, None)] * 2
    assert list(_weights(rows)) == [1.0] * 6 + [3.0] * 2
    assert list(_weights(rows[:6])) == [1.0] * 6  # no in-situ points: all alike
