"""The CPU fit recovers known parameters from synthetic measurements (no noise: exactly)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from sim.cost.cpu import Residency, cpu_op_cost
from sim.cpu_calibration import AttentionCoefficients, GemmCoefficients
from sim.trace import Op
from tests.cpu_fixtures import MIB, TOY_CAL, embedding_op, gemm_op, stream_op
from validation.cpu_fit import (
    COLD,
    EVICTED,
    Point,
    _least_squares,
    fit_attention,
    fit_dispatch,
    fit_gemm,
    load_points,
)
from validation.cpu_fit_stream import ELEMENT_STARTS, fit_stream, robust_loss
from validation.microbench.suite import op_record

VIEW = Op(id=0, name="aten::view", category="view")


def _point(ops, cal=TOY_CAL, residency=None, cold_share=0.0) -> Point:
    """A point measured exactly as the model prices it: its warm and cold calls."""
    point = Point(key=str(id(ops)), kind=ops[-1].category, split="fit", ops=tuple(ops),
                  residency=residency or Residency(), measured_s=0.0, cold_share=cold_share)
    measured = sum(share * cpu_op_cost(op, cal, calls).total_s
                   for share, calls in point.calls() for op in ops)
    return dataclasses.replace(point, measured_s=measured)


def test_a_point_splits_its_calls_into_warm_and_cold():
    warm = Residency(reuse_bytes=MIB)
    point = Point("p", "copy", "fit", (VIEW,), warm, 1e-6, cold_share=0.25)
    assert point.calls() == ((0.75, warm), (0.25, COLD))
    assert dataclasses.replace(point, cold_share=1.0).calls() == ((1.0, COLD),)
    assert dataclasses.replace(point, cold_share=0.0).calls() == ((1.0, warm),)


def test_points_run_cold_once_per_sample_block():
    # the timer interleaves points: a sample's first call finds nothing of its data cached
    ops = json.dumps([op_record(stream_op("add", (4, 4), inputs=2))])
    table = pd.DataFrame({"key": ["a", "b"], "category": "elementwise", "split": "fit",
                          "measured_s": 1e-6, "reuse_bytes": 192.0,
                          "weight_reuse_bytes": 192.0, "ops": ops, "block": [4, 1]})
    assert [p.cold_share for p in load_points(table)] == [0.25, 1.0]
    assert load_points(table.drop(columns="block"))[0].cold_share == 0.0  # no record: warm


def test_a_block_reads_each_rotated_set_the_round_evicted_once():
    # 4 calls per block over 2 buffer sets: the 1st cold, the 2nd on an evicted set, 2 warm;
    # 8 calls over a pool of 64 cold weight copies: 1 cold, 7 with weights from main memory
    ops = json.dumps([op_record(stream_op("add", (4, 4), inputs=2))])
    table = pd.DataFrame({"key": ["rotated", "cold", "one set"], "category": "elementwise",
                          "split": "fit", "measured_s": 1e-6, "reuse_bytes": 192.0,
                          "weight_reuse_bytes": [384.0, 64 * 192.0, 192.0], "ops": ops,
                          "block": [4, 8, 4], "copies": [2, 64, 1],
                          "cold": [False, True, False]})
    rotated, cold, one = load_points(table)
    assert rotated.calls() == ((0.5, rotated.residency), (0.25, EVICTED), (0.25, COLD))
    weights_evicted = Residency(reuse_bytes=192.0, weight_reuse_bytes=float("inf"))
    assert cold.calls() == ((0.875, weights_evicted), (0.125, COLD))
    assert one.calls() == ((0.75, one.residency), (0.25, COLD))
    without = load_points(table.drop(columns=["copies", "cold"]))  # an older table: one set
    assert [p.evicted_share for p in without] == [0.0, 0.0, 0.0]


def test_dispatch_is_the_geometric_mean_of_view_points():
    points = [Point("a", "view", "fit", (VIEW,), Residency(), 1e-6),
              Point("b", "view", "fit", (VIEW,), Residency(), 4e-6)]
    assert fit_dispatch(points) == pytest.approx(2e-6)


def test_gemm_fit_recovers_known_coefficients():
    rng = np.random.default_rng(0)
    shapes = [(int(m), int(n), int(k)) for m, n, k in rng.integers(2, 600, size=(40, 3))]
    shapes += [(1, int(n), int(k)) for n, k in rng.integers(16, 2000, size=(10, 2))]
    truth = dataclasses.replace(TOY_CAL.gemm["fp32"], dram_call_s=4e-6, gemv_dram_row_s=30e-9)
    cal = dataclasses.replace(TOY_CAL, gemm={"fp32": truth})
    # every third point's weights rotate through main memory (a cold pool)
    points = [_point([VIEW, gemm_op(m, n, k)], cal, cold_share=1 / (1 + i % 5),
                     residency=Residency(weight_reuse_bytes=64 * MIB) if i % 3 == 0 else None)
              for i, (m, n, k) in enumerate(shapes)]
    start = dataclasses.replace(TOY_CAL, gemm={"fp32": GemmCoefficients(
        1e-5, 1e-9, 1e-11, 1e-9, 3e11, 1e-5, 1e-9, 1e-8, 0.9, 1e-6)})
    fitted = fit_gemm(points, start, "fp32")
    for name in vars(truth):
        assert getattr(fitted, name) == pytest.approx(getattr(truth, name), rel=1e-3), name


def _attention(b, h, s_q, s_k, d, causal, group=1):
    return Op(id=0, name="aten::_scaled_dot_product_flash_attention_for_cpu",
              category="attention", attrs={"b": b, "h_q": h * group, "h_kv": h, "s_q": s_q,
                                           "s_k": s_k, "d": d, "causal": causal})


def test_attention_fit_recovers_known_coefficients():
    rng = np.random.default_rng(1)
    points = []
    for i in range(80):
        b, h = int(rng.integers(1, 4)), int(rng.integers(1, 16))
        s_k, d = int(rng.integers(8, 1500)), int(rng.choice([32, 64, 128]))
        s_q = 1 if i % 3 == 0 else s_k
        residency = Residency(reuse_bytes=64 * MIB) if i % 4 == 0 else None  # main memory
        points.append(_point([_attention(b, h, s_q, s_k, d, causal=i % 2 == 1,
                                         group=int(rng.choice([1, 4])))], residency=residency,
                             cold_share=1 / (2 + i % 4)))  # warm calls in every point
    start = dataclasses.replace(TOY_CAL, attention={"fp32": AttentionCoefficients(
        1e-5, 1e-7, 1e-7, 1e-8, 1e-9, 2e11, 1e-7, 1e-9, 50.0, 1e-6)})
    fitted = fit_attention(points, start, "fp32")
    truth = TOY_CAL.attention["fp32"]
    for name in vars(truth):
        assert getattr(fitted, name) == pytest.approx(getattr(truth, name), rel=2e-3), name


def test_stream_fit_recovers_bandwidths_floors_and_element_times():
    sizes = [(16, 64), (32, 100), (512, 256), (600, 1024), (1024, 512), (4096, 1024),
             (8192, 2048)]  # add (600, 1024): 7 MiB, inside the 8 MiB llc but not 6
    points = [_point([stream_op("add", s, inputs=2)]) for s in sizes]
    points += [_point([stream_op("gelu", s)]) for s in sizes]
    points += [_point([stream_op("_softmax", s, category="reduction")]) for s in sizes]
    points += [_point([stream_op("clone", s, category="copy", contiguous=False)])
               for s in sizes]
    points += [_point([stream_op("add", (64, 2**20 * m), inputs=2)]) for m in (1, 2)]
    # some timed partly cold: half their calls from main memory
    points += [_point([stream_op("add", s, inputs=2)], cold_share=0.5) for s in sizes[2:5]]
    start = dataclasses.replace(TOY_CAL, op_floor_s={}, element_s={}, row_s={},
                                fault_bytes_per_s=1e9, strided_fraction=0.5,
                                levels=tuple(dataclasses.replace(lv, bandwidth_bytes_per_s=50e9)
                                             for lv in TOY_CAL.levels))
    fitted = fit_stream(points, start, _least_squares)
    assert [lv.capacity_bytes for lv in fitted.levels] == [lv.capacity_bytes
                                                           for lv in TOY_CAL.levels]
    # l1 points are floor-bound (bytes / bandwidth << floor): its bandwidth is not identifiable
    for got, want in zip(fitted.levels[1:], TOY_CAL.levels[1:], strict=True):
        assert got.bandwidth_bytes_per_s == pytest.approx(want.bandwidth_bytes_per_s, rel=1e-3)
    assert fitted.op_floor_s["gelu"] == pytest.approx(4e-6, rel=1e-3)
    assert fitted.op_floor_s["add"] == pytest.approx(2e-6, rel=1e-3)
    assert fitted.element_s["gelu"] == pytest.approx(1e-9, rel=1e-3)
    # add is never compute-bound: an element time, if kept, is at most its fastest stream
    assert fitted.element_s.get("add", 0.0) <= 12 / 400e9 * 1.001
    assert fitted.row_s["_softmax"] == pytest.approx(10e-9, rel=1e-3)
    assert fitted.strided_fraction == pytest.approx(0.25, rel=1e-3)
    assert fitted.fault_bytes_per_s == pytest.approx(4e9, rel=1e-3)


def test_robust_loss_is_soft_l1_of_log_residuals_at_a_10_percent_scale():
    # rho(z) = 2 (sqrt(1 + z) - 1), z = (r / 0.1)^2: quadratic inside ~10 %, linear beyond
    assert robust_loss(np.array([0.0, 0.1])) == pytest.approx(2 * (np.sqrt(2) - 1))
    assert robust_loss(np.array([1.0])) == pytest.approx(2 * (np.sqrt(101) - 1))


def test_stream_fit_keeps_the_lowest_loss_of_its_starts(monkeypatch):
    import validation.cpu_fit_stream as stream

    points = [_point([stream_op("gelu", s)]) for s in [(16, 64), (512, 256), (4096, 1024)]]
    seen = []

    def fake_fit_from(points, cal, fit_lsq, a, element_start):
        seen.append(element_start)
        x = np.zeros(len(cal.levels) + 2 * len(a["keys"]) + 3)
        x[: len(cal.levels)] = 1e9 * (1 + len(seen))  # the bandwidths mark the start
        x[-1] = 1e9
        return abs(np.log(element_start / 1e-10)), x  # the 1e-10 start has the lowest loss

    monkeypatch.setattr(stream, "_fit_from", fake_fit_from)
    fitted = fit_stream(points, TOY_CAL, _least_squares)
    assert seen == list(ELEMENT_STARTS)
    best = ELEMENT_STARTS.index(1e-10) + 1
    assert fitted.levels[0].bandwidth_bytes_per_s == pytest.approx(1e9 * (1 + best))

def test_a_per_dtype_time_that_binds_nowhere_is_kept_as_zero():
    # dropped, embedding.bf16 would fall back on the fp32 key's row time at prediction
    from validation.cpu_fit_stream import _binding

    keys = ["embedding", "embedding.bf16", "gelu"]
    values = np.array([5e-9, 4e-9, 1e-9])
    key_of = np.array([0, 1, 2])
    binds = np.array([True, False, False])
    assert _binding(keys, values, key_of, binds) == {"embedding": 5e-9, "embedding.bf16": 0.0}


def test_stream_fit_chooses_the_gather_ramp_of_lowest_loss():
    # embeddings priced with a 4 KiB ramp at a 0.3 gather fraction: rows of 1-16 KiB tell the
    # ramp apart (rows past 4 KiB pay for 4 KiB of misses, not all of their bytes)
    truth = dataclasses.replace(TOY_CAL, gather_fraction=0.3, gather_ramp_bytes=4096.0,
                                row_s={"embedding": 50e-9})
    shapes = [(n, vocab, d) for n, vocab in ((64, 100_000), (512, 2_000), (2048, 50_000))
              for d in (256, 1024, 2048, 4096)]
    points = [_point([embedding_op(*s)], cal=truth) for s in shapes]
    points += [_point([stream_op("add", s, inputs=2)], cal=truth)
               for s in [(16, 64), (512, 256), (1024, 512), (4096, 1024), (8192, 2048)]]
    fitted = fit_stream(points, truth, _least_squares)
    assert fitted.gather_ramp_bytes == 4096.0
    assert fitted.gather_fraction == pytest.approx(0.3, rel=5e-3)
    assert fitted.row_s["embedding"] == pytest.approx(50e-9, rel=1e-2)
