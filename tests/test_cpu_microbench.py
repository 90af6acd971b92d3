"""The micro-benchmark harness: robust timing, rotation, and ops recorded as a trace would."""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F

from sim.spec_library import load_spec
from validation.microbench.cases import Case, prepare
from validation.microbench.sweeps import build_cases
from validation.microbench.timer import Timing, TimingPlan, _kept, noise, time_interleaved

SPEC = load_spec("amd-epyc-zen5", units=1)


def test_noise_is_the_normal_sigma_from_the_iqr():
    assert noise([1.0]) == 0.0
    assert noise([0.9, 1.0, 1.0, 1.0, 1.1]) == pytest.approx(0.0, abs=1e-12)
    assert noise([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(2.0 / (1.349 * 3.0))


def test_samples_taken_while_the_sentinel_was_slow_are_dropped():
    samples = [(1.0, 1.0), (1.1, 1.1), (5.0, 3.0), (1.2, 1.0), (0.9, 1.05), (1.0, 1.0),
               (4.0, 2.0)]
    kept = _kept(samples, block=1, limit=1.15)
    assert kept.samples_s == (1.0, 1.1, 1.2, 0.9, 1.0) and kept.dropped == 2
    # too few calm samples: the five least disturbed are kept
    assert _kept(samples, block=1, limit=0.5).samples_s == (1.0, 1.1, 1.2, 0.9, 1.0)


def test_interleaved_timing_with_a_steady_sentinel_keeps_every_sample():
    plan = TimingPlan(rounds=7, block_target_s=1e-5, warmup_s=0.0)
    timings = time_interleaved([lambda: None] * 5, plan, sentinel=lambda: None)
    assert all(len(t.samples_s) + t.dropped == 7 for t in timings)
    assert all(t.median_s > 0 and t.block >= 1 for t in timings)


def test_each_blocks_first_call_is_timed_apart():
    # two callables that run slow (>= 300 us) when the other ran last: the interleaved rounds
    # make every block's first call the slow one, as the cold first call of a suite point
    last = [None]

    def make(name):
        def call():
            if last[0] != name:
                until = time.perf_counter() + 300e-6
                while time.perf_counter() < until:
                    pass
            last[0] = name
        return call

    plan = TimingPlan(rounds=7, block_target_s=1e-5, warmup_s=0.0, max_block=8)
    for timing in time_interleaved([make("a"), make("b")], plan):
        assert timing.block > 1 and len(timing.first_s) == len(timing.samples_s)
        assert timing.first_median_s >= 300e-6 > 10 * timing.rest_median_s
        assert timing.median_s == pytest.approx(
            (timing.first_median_s + (timing.block - 1) * timing.rest_median_s) / timing.block,
            rel=0.2)
    # a block of one call: the call is the sample, nothing apart
    assert Timing((1e-6,), 1, first_s=(1e-6,)).first_median_s is None
    assert Timing((1e-6,), 4).rest_median_s is None  # not timed apart (CUDA)


def _linear_case(m=8, n=16, k=32) -> Case:
    return Case("linear", "gemm", "fp32", {"m": m, "n": n, "k": k},
                lambda g: {"x": torch.randn(1, m, k, generator=g),
                           "w": torch.randn(n, k, generator=g)},
                lambda x, w: F.linear(x, w), weights=("w",))


def test_a_point_carries_the_ops_a_captured_trace_would():
    point = prepare(_linear_case(), SPEC, seed=0)
    names = [op.name for op in point.ops]
    assert names == ["aten::t", "aten::view", "aten::mm", "aten::_unsafe_view"]
    mm = point.ops[2]
    assert (mm.category, dict(mm.attrs), mm.measured_s) == ("gemm", {"b": 1, "m": 8, "n": 16,
                                                                     "k": 32, "b_layout": "nk"},
                                                            None)
    assert point.copies == 1  # 2.6 KiB: no cache level smaller than it to flatter the loop


def test_rotation_defeats_the_inner_cache_and_cold_points_rotate_weights():
    # 16 x 900 @ (900 x 8): ~86 KiB > the 48 KiB L1d -> ceil(2 x 48 KiB / 86 KiB) = 2 copies
    assert prepare(_linear_case(m=16, n=8, k=900), SPEC, seed=0).copies == 2
    cold = prepare(Case(**{**vars(_linear_case(n=2048, k=2048)), "cold": True}), SPEC, seed=0)
    weight_bytes = 2048 * 2048 * 4
    assert cold.copies * weight_bytes >= 4 * SPEC.memory[-2].capacity_bytes
    assert cold.weight_reuse_bytes == cold.copies * cold.reuse_bytes
    weights = {id(s["w"]) for s in cold.buffers}
    inputs = {id(s["x"]) for s in cold.buffers}
    assert len(weights) == cold.copies and len(inputs) == 1
    # small weights too: 574 x 80 fp32 (184 KB) cycle over 4 LLCs, not over 64 copies (12 MB)
    small = prepare(Case(**{**vars(_linear_case(n=574, k=80)), "cold": True}), SPEC, seed=0)
    assert small.copies * 574 * 80 * 4 >= 4 * SPEC.memory[-2].capacity_bytes


def test_sweeps_hold_out_every_third_draw_and_quick_is_a_subset():
    full, quick = build_cases(), build_cases(quick=True)
    assert {c.key for c in quick} <= {c.key for c in full}
    assert 0.3 < sum(c.split == "heldout" for c in full) / len(full) < 0.36
    assert {c.category for c in full} >= {"gemm", "attention", "elementwise", "reduction",
                                          "norm", "copy", "embedding", "view"}


def test_passes_keep_each_points_median_over_passes():
    import pandas as pd

    from validation.microbench.suite import COLUMNS, _median_of_passes

    def row(key, measured, noise_, samples, dropped):
        base = dict.fromkeys(COLUMNS, 0)
        return {**base, "key": key, "measured_s": measured, "noise": noise_,
                "num_samples": samples, "dropped": dropped}

    rows = pd.DataFrame([row("b", 3e-6, 0.1, 5, 1), row("a", 1e-6, 0.2, 7, 0),
                         row("b", 9e-6, 0.3, 6, 2), row("a", 2e-6, 0.1, 7, 1),
                         row("b", 4e-6, 0.2, 5, 0)], columns=list(COLUMNS))
    table = _median_of_passes(rows)
    assert list(table["key"]) == ["a", "b"] and list(table.columns) == list(COLUMNS)
    # "b": one disturbed pass (9 us) does not move it; "a": two passes, their mean median
    assert table["measured_s"].tolist() == pytest.approx([1.5e-6, 4e-6])
    assert table["noise"].tolist() == pytest.approx([0.15, 0.2])
    assert table["num_samples"].tolist() == [14, 16] and table["dropped"].tolist() == [1, 3]


def test_a_suite_in_two_passes_times_every_point_twice():
    from validation.microbench.suite import run_suite

    cases = [c for c in build_cases(quick=True, families=("add", "view"))][:4]
    plan = TimingPlan(rounds=3, block_target_s=20e-6, warmup_s=1e-4)
    spec = load_spec("amd-epyc-zen5", units=1)
    one = run_suite(cases, spec, plan, seed=3, progress=False)
    two = run_suite(cases, spec, plan, seed=3, progress=False, passes=2)
    assert list(two["key"]) == list(one["key"]) == sorted(c.key for c in cases)
    assert (two["num_samples"] > one["num_samples"]).all()
