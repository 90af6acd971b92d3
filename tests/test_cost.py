"""The cost model on the round-number toy devices: every expected time computed by hand."""

from __future__ import annotations

import pytest

from sim.cost import MeasuredCostModel, RooflineCostModel, cost_ops
from sim.cost.attention import attention_flops, attention_pairs
from sim.cost.collective import collective_time
from sim.errors import InputError
from sim.single_op import make_op
from sim.trace import Op

MODEL = RooflineCostModel()


def test_gemm_tiles_waves_and_compute_bound(toy_gpu):
    # 128x128 output in 64x64 tiles = 4 tiles on 2 units = 2 waves;
    # each wave: 2*64*64*1000 FLOP at 1 TFLOP/s per unit (bf16 peak 2 TFLOP/s over 2 units)
    cost = MODEL.cost(make_op("gemm", "bf16", {"m": 128, "n": 128, "k": 1000}), toy_gpu)
    assert cost.bound == "compute"
    assert cost.t_calc_s == pytest.approx(2 * 2 * 64 * 64 * 1000 / 1e12)
    assert cost.detail["tiles"] == 4 and cost.detail["waves"] == 2
    assert cost.t_pre_s == pytest.approx(1e-6 + 1e-6)  # dispatch + one launch
    assert cost.t_post_s == pytest.approx(0.5e-6)  # completion, no sync


def test_gemm_wave_quantization_costs_a_full_wave(toy_gpu):
    full = MODEL.cost(make_op("gemm", "bf16", {"m": 128, "n": 64, "k": 4096}), toy_gpu)
    one_more = MODEL.cost(make_op("gemm", "bf16", {"m": 129, "n": 64, "k": 4096}), toy_gpu)
    # 2 tiles fill both units in 1 wave; 3 tiles need 2 waves: twice the time for 0.8% more work
    assert full.t_calc_s == pytest.approx(2 * 64 * 64 * 4096 / 1e12)
    assert one_more.t_calc_s == pytest.approx(2 * full.t_calc_s)
    assert one_more.detail["waves"] == 2 and one_more.detail["tile"] == "64x64"


def test_small_gemm_uses_both_units(toy_gpu):
    # a 64 x 32 output is one tile: narrower tiles (or split-K) put both units to work
    cost = MODEL.cost(make_op("gemm", "bf16", {"m": 64, "n": 32, "k": 4096}), toy_gpu)
    assert cost.detail["waves"] == 1 and cost.detail["tiles"] == 2
    assert cost.t_calc_s == pytest.approx(2 * 64 * 32 * 4096 / 2 / 1e12)


def test_split_k_fills_idle_units(toy_gpu):
    # one 64x64 output tile, long k: split-K 2 puts both units to work
    cost = MODEL.cost(make_op("gemm", "bf16", {"m": 64, "n": 64, "k": 8192}), toy_gpu)
    assert cost.detail["split_k"] == 2 and cost.detail["waves"] == 1
    assert cost.t_calc_s == pytest.approx(2 * 64 * 64 * 4096 / 1e12)


def test_skinny_gemm_is_memory_bound_from_hbm(toy_gpu):
    # m=1 (decode-like): bytes = (1*8192 + 8192*8192 + 8192) * 2 B > 1 MB L2 -> HBM at 100 GB/s
    cost = MODEL.cost(make_op("gemm", "bf16", {"m": 1, "n": 8192, "k": 8192}), toy_gpu)
    nbytes = (8192 + 8192 * 8192 + 8192) * 2
    assert cost.bound == "memory" and cost.detail["memory_level"] == "hbm"
    assert cost.t_calc_s == pytest.approx(nbytes / 100e9)


def test_tiny_elementwise_is_latency_bound_in_l2(toy_gpu):
    cost = MODEL.cost(make_op("elementwise", "fp32", {"numel": 256}), toy_gpu)
    assert cost.bound == "latency" and cost.detail["memory_level"] == "l2"
    assert cost.t_calc_s == pytest.approx(1e-6)


def test_large_elementwise_streams_from_hbm(toy_gpu):
    numel = 2**24  # 3 * 64 MiB > 1 MB L2
    cost = MODEL.cost(make_op("elementwise", "fp32", {"numel": numel}), toy_gpu)
    assert cost.bound == "memory"
    assert cost.t_calc_s == pytest.approx(3 * numel * 4 / 100e9)


def test_view_costs_host_dispatch_only(toy_gpu):
    cost = MODEL.cost(Op(id=0, name="aten::view", category="view"), toy_gpu)
    assert (cost.t_pre_s, cost.t_calc_s, cost.t_post_s, cost.bound) == (1e-6, 0.0, 0.0, "host")


def test_sync_adds_to_t_post(toy_gpu):
    cost = MODEL.cost(Op(id=0, name="x", category="elementwise", flops=1, bytes_read=4,
                         sync=True), toy_gpu)
    assert cost.t_post_s == pytest.approx(0.5e-6 + 5e-6)


def test_multi_kernel_op_pays_each_latency_floor(toy_gpu):
    op = Op(id=0, name="x", category="elementwise", flops=10, bytes_read=40, num_kernels=3)
    cost = MODEL.cost(op, toy_gpu)
    assert cost.t_calc_s == pytest.approx(3 * 1e-6)
    assert cost.t_pre_s == pytest.approx(1e-6 + 3 * 1e-6)


def test_cpu_peaks_scale_with_cores(toy_cpu):
    # per core: 100 FLOP/cycle at 1 GHz; fp32 GEMM 16x16 tiles over 4 cores vs 1 core
    op = make_op("gemm", "fp32", {"m": 64, "n": 64, "k": 64})
    four = MODEL.cost(op, toy_cpu)
    one = MODEL.cost(op, toy_cpu.with_units(1))
    assert four.t_calc_s == pytest.approx(4 * 2 * 16 * 16 * 64 / 100e9)  # 16 tiles, 4 waves
    assert one.t_calc_s == pytest.approx(4 * four.t_calc_s)


def test_cpu_bandwidth_per_core_limits_one_core(toy_cpu):
    op = make_op("elementwise", "fp32", {"numel": 2**26})  # 768 MiB: from DRAM
    assert MODEL.cost(op, toy_cpu).t_calc_s == pytest.approx(3 * 2**26 * 4 / 40e9)
    one = MODEL.cost(op, toy_cpu.with_units(1))
    assert one.t_calc_s == pytest.approx(3 * 2**26 * 4 / 20e9)


@pytest.mark.parametrize(("s_q", "s_k", "causal", "pairs"), [
    (4, 4, True, 10), (4, 4, False, 16), (1, 8, True, 8), (2, 8, True, 15), (8, 4, True, 10),
])
def test_attention_pairs(s_q, s_k, causal, pairs):
    assert attention_pairs(s_q, s_k, causal) == pairs


@pytest.mark.parametrize(("s_q", "s_k", "pairs"), [(4, 4, 10), (2, 8, 3), (8, 4, 10 + 4 * 4)])
def test_attention_pairs_top_left_as_pytorch_is_causal(s_q, s_k, pairs):
    assert attention_pairs(s_q, s_k, True, "top_left") == pairs


def test_attention_causal_halves_the_work_of_a_long_sequence():
    attrs = {"b": 2, "h_q": 8, "s_q": 1024, "s_k": 1024, "d": 64}
    full = attention_flops({**attrs, "causal": False})
    causal = attention_flops({**attrs, "causal": True})
    assert full == 4 * 2 * 8 * 64 * 1024 * 1024
    assert causal == 4 * 2 * 8 * 64 * (1024 * 1025 // 2)


def test_allreduce_ring_alpha_beta(toy_gpu):
    kernel = collective_time(toy_gpu, kind="allreduce", size_bytes=1e9, num_ranks=4)
    assert kernel.t_s == pytest.approx(2 * 3 * 1e-6 + 2 * 3 / 4 * 1e9 / 100e9)
    assert kernel.bound == "link"


def test_measured_model_replays_and_rejects_unmeasured(toy_gpu):
    model = MeasuredCostModel()
    assert model.cost(Op(id=0, name="x", category="other", measured_s=0.25), toy_gpu).t_calc_s \
        == 0.25
    with pytest.raises(InputError, match="no measured_s"):
        model.cost(Op(id=1, name="x", category="other"), toy_gpu)


def test_identical_ops_are_priced_once_and_identically(toy_gpu):
    ops = [make_op("gemm", "bf16", {"m": 64, "n": 64, "k": 64})] * 3
    costs = cost_ops(ops, toy_gpu, MODEL)
    assert costs[0] is costs[1] is costs[2]


@pytest.mark.parametrize("kind,sizes,field", [
    ("gemm", {"m": 0, "n": 1, "k": 1}, "--m"),
    ("gemm", {"m": 1, "n": 1}, "--k"),
    ("gemm", {"m": 2**40, "n": 1, "k": 1}, "--m"),
    ("allreduce", {"bytes": 10, "ranks": 1}, "--ranks"),
])
def test_bad_sizes_name_the_flag(kind, sizes, field):
    with pytest.raises(InputError) as info:
        make_op(kind, "bf16", sizes)
    assert info.value.field == field
