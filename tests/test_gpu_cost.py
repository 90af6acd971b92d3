"""The GPU sub-models on the round-number toy GPU: every expected time computed by hand.

Toy GPU (tests/data/toy-gpu.yaml): 2 units at 1 GHz, bf16 2 TFLOP/s (1 TFLOP/s per unit), vector
fp32 0.5 TFLOP/s, GEMM tile 64x64 (no menu: 128x64, 64x64, 64x32, 32x32, 32 deep), L2 1 MB at
1 TB/s and 1 us, HBM 1 GB at 100 GB/s and 2 us, one 100 GB/s NVLink; no compute capability, no
attention kernel (FlashAttention-2 structure).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from sim.cost import A100_FIT, CalibratedCostModel, GpuParams, RooflineCostModel
from sim.cost.attention import attention_times
from sim.cost.collective import collective_times
from sim.cost.gemm import gemm_times
from sim.cost.gpu_params import kernel_overhead_s, kernel_scope, operand_stream_efficiency
from sim.cost.l2_reuse import l2_reuse
from sim.cost.model import cost_ops
from sim.cost.vector import stream_op_times
from sim.errors import InputError
from sim.hardware import Clocks, parse_spec
from sim.single_op import make_op
from sim.spec_library import load_spec, read_yaml
from sim.trace import Op

# Ideal parameters: peak rates, no fitted overheads except 1000 cycles (1 us at 1 GHz) per kernel.
IDEAL = GpuParams(
    matrix_efficiency=1.0, tile_overhead_cycles=0.0, iteration_cycles=0.0,
    kernel_overhead_cycles=1000.0, inflight_bytes_per_unit=float("inf"), stream_efficiency=1.0,
    vector_efficiency=1.0, softmax_ops_per_pair=0.0, attention_cta_round_trips=0.0,
    attention_overhead_cycles=0.0, link_efficiency=1.0, link_efficiency_drop=0.0,
    collective_latency_s=0.0, collective_latency_scale=0.0, default_clock_fraction=0.5,
    event_floor_s=0.0, graph_gap_cycles=0.0,
)
STEP = 2 * 128 * 64 * 32 / 1e12  # one 32-deep main-loop step of a 128x64 tile at 1 TFLOP/s


def _gemm(spec, params, mode="locked", **shape):
    result = gemm_times(spec, params, dtype="bf16", clock_mode=mode, b=1, **shape)
    return {k: float(v) for k, v in result.items()}


def _with_compute(spec, **changes):
    return dataclasses.replace(spec, compute=dataclasses.replace(spec.compute, **changes))


def test_gemm_large_tile_fills_the_gpu(toy_gpu):
    # menu without gemm_tile.menu: the 64x64 tile doubled in m first (128x64), bk 32: 2 tiles on
    # 2 units = 1 wave of ceil(1000 / 32) = 32 steps; operands (512 kB) + C (32 kB) fit the 1 MB
    # L2 and their reads (1 us + 0.512 us) overlap the main loop; C drains to HBM (100 GB/s)
    r = _gemm(toy_gpu, IDEAL, m=128, n=128, k=1000)
    assert (r["tile_m"], r["tile_n"], r["waves"]) == (128, 64, 1)
    assert r["t_s"] == pytest.approx(32 * STEP + 32768 / 100e9 + 1e-6)


def test_gemm_tile_overhead_is_paid_per_wave_unless_persistent(toy_gpu):
    params = IDEAL.replace(tile_overhead_cycles=1000.0)  # 1 us at the toy's 1 GHz
    plain = _gemm(toy_gpu, params, m=512, n=64, k=512)  # 4 tiles of 128x64: 2 waves
    assert (plain["tile_m"], plain["waves"]) == (128, 2)
    mainloop = 2 * 16 * STEP  # operands (590 kB) and C (64 kB) sit in L2
    assert plain["t_s"] == pytest.approx(mainloop + 2 * 1e-6 + 65536 / 100e9 + 1e-6)
    persistent = _gemm(_with_compute(toy_gpu, gemm_persistent=True), params, m=512, n=64, k=512)
    assert persistent["t_s"] == pytest.approx(mainloop + 1e-6 + 1e-6)  # one fill, write hidden


def test_skinny_gemm_streams_the_weights_from_hbm(toy_gpu):
    # m=1 x [8192, 8192] bf16: 128 MiB of weights > 1 MB L2: 2 us + bytes / 100 GB/s
    r = _gemm(toy_gpu, IDEAL, m=1, n=8192, k=8192)
    reads = (8192 + 8192 * 8192) * 2
    assert r["t_memory_s"] == pytest.approx(2e-6 + reads / 100e9)
    assert r["t_s"] == pytest.approx(2e-6 + (reads + 8192 * 2) / 100e9 + 1e-6)


def test_default_clocks_slow_tensor_work_by_the_fitted_fraction(toy_gpu):
    locked = _gemm(toy_gpu, IDEAL, "locked", m=128, n=128, k=100000)
    default = _gemm(toy_gpu, IDEAL, "default", m=128, n=128, k=100000)
    assert default["t_compute_s"] == pytest.approx(2 * locked["t_compute_s"])  # fraction 0.5


def test_main_loop_steps_cannot_beat_the_iteration_floor(toy_gpu):
    # m=16: a 16x64 tile does 65.5 ns of MMA per 32-deep step, under the 1 us floor; 10 steps
    params = IDEAL.replace(iteration_cycles=1000.0)
    r = _gemm(toy_gpu, params, m=16, n=64, k=320)
    assert r["t_compute_s"] == pytest.approx(10 * 1e-6)


def test_operand_feed_from_l2_bounds_narrow_tiles_unless_shared(toy_gpu):
    # L2 at 10 GB/s: a 128x64 tile (menu entry, no sharing) loads (128 + 64) x 1024 x 2 B per SM
    l2 = dataclasses.replace(toy_gpu.memory[1], bandwidth_bytes_per_s=10e9)
    slow = dataclasses.replace(toy_gpu, memory=(toy_gpu.memory[0], l2, toy_gpu.memory[2]))
    one = _with_compute(slow, gemm_menu=((128, 64, 32, 1),))
    r = _gemm(one, IDEAL, m=128, n=128, k=1024)
    feed = 2 * 1024 * 2 * (128 + 64) / 10e9  # 2 active SMs, one wave
    assert r["t_s"] == pytest.approx(feed + 32768 / 100e9 + 1e-6)
    two = _with_compute(slow, gemm_menu=((128, 64, 32, 2),))  # the pair loads the 128 edge once
    assert _gemm(two, IDEAL, m=128, n=128, k=1024)["t_s"] < r["t_s"]


def test_kernel_overhead_is_counted_in_sm_cycles(toy_gpu):
    fast = _with_compute(toy_gpu, clock_hz=2e9)
    assert kernel_overhead_s(toy_gpu, IDEAL) == pytest.approx(1e-6)
    assert kernel_overhead_s(fast, IDEAL) == pytest.approx(0.5e-6)
    # a profiler's kernel durations leave out the gap between graph nodes
    gap = IDEAL.replace(graph_gap_cycles=400.0)
    assert kernel_scope(gap).kernel_overhead_cycles == pytest.approx(600.0)
    assert kernel_scope(IDEAL.replace(graph_gap_cycles=5000.0)).kernel_overhead_cycles == 0.0


def test_specs_carry_their_libraries_kernel_menus():
    assert (128, 256, 64, 2) in load_spec("h100").compute.gemm_menu
    assert load_spec("a100").compute.gemm_menu[0] == (256, 128, 32, 1)
    assert load_spec("b200").compute.compute_capability == 10.0
    data = read_yaml(Path(load_spec("h100").path))
    data["compute"]["gemm_tile"]["menu"] = [[128, 128]]
    with pytest.raises(InputError, match="compute.gemm_tile.menu"):
        parse_spec(data, file="x.yaml")


def test_littles_law_limits_multistage_kernels(toy_gpu):
    # 2 units x 1000 B in flight / (2 us * 100 GB/s) = 1 % of the HBM peak
    params = IDEAL.replace(inflight_bytes_per_unit=1000.0)
    assert operand_stream_efficiency(toy_gpu, params) == pytest.approx(0.01)
    assert operand_stream_efficiency(toy_gpu, params, 1) == pytest.approx(0.005)


def test_memory_bound_op_ramps_with_latency(toy_gpu):
    r = stream_op_times(toy_gpu, IDEAL.replace(stream_efficiency=0.5), nbytes=1e8, flops=1e6,
                        dtype="fp32")
    assert float(r["t_s"]) == pytest.approx(2e-6 + 1e8 / 50e9 + 1e-6)
    tiny = stream_op_times(toy_gpu, IDEAL, nbytes=1e3, flops=0.0, dtype="fp32")
    assert float(tiny["t_s"]) == pytest.approx(1e-6 + 1e3 / 1e12 + 1e-6)  # from L2
    # a one-CTA-per-row kernel waiting on 3 more dependent DRAM round trips (2 us each)
    chained = stream_op_times(toy_gpu, IDEAL, nbytes=1e3, flops=0.0, dtype="fp32", round_trips=3)
    assert float(chained["t_s"]) == pytest.approx(float(tiny["t_s"]) + 3 * 2e-6)


def test_inputs_left_in_l2_stream_at_its_bandwidth(toy_gpu):
    # 1e8 B of which 4e5 B were just written by the previous kernel: those from L2 (1 TB/s),
    # the rest from HBM (100 GB/s, 2 us latency), plus the 1 us kernel overhead
    r = stream_op_times(toy_gpu, IDEAL, nbytes=1e8, flops=0.0, dtype="fp32", hot_bytes=4e5)
    assert float(r["t_s"]) == pytest.approx(2e-6 + (1e8 - 4e5) / 100e9 + 4e5 / 1e12 + 1e-6)
    # hot bytes never exceed the bytes moved
    r = stream_op_times(toy_gpu, IDEAL, nbytes=1e3, flops=0.0, dtype="fp32", hot_bytes=1e9,
                        resident_bytes=1e8)
    assert float(r["t_s"]) == pytest.approx(2e-6 + 1e3 / 1e12 + 1e-6)
    # with no cold reads the kernel waits on the latency of the level its bytes fit in (L2)
    r = stream_op_times(toy_gpu, IDEAL, nbytes=1e3, flops=0.0, dtype="fp32", hot_bytes=5e2,
                        resident_bytes=1e8, cold_read_bytes=[0.0, 1.0])
    assert r["t_s"] == pytest.approx([1e-6 + 5e2 / 100e9 + 5e2 / 1e12 + 1e-6,
                                      2e-6 + 5e2 / 100e9 + 5e2 / 1e12 + 1e-6])


def test_l2_reuse_follows_the_producer_within_the_cache(toy_gpu):
    # toy L2: 1 MB. a writes 4e5 B; b (a view of it) writes nothing; c reads 4e5 B via the view:
    # a hit. d touches 2e6 B, so e (reads a's output) and f (reads c's) miss.
    ops = [Op(0, "a", "elementwise", bytes_read=4e5, bytes_written=4e5),
           Op(1, "b", "view", deps=(0,)),
           Op(2, "c", "elementwise", bytes_read=4e5, bytes_written=1e5, deps=(1,)),
           Op(3, "d", "copy", bytes_read=1e6, bytes_written=1e6),
           Op(4, "e", "elementwise", bytes_read=4e5, bytes_written=4e5, deps=(0,)),
           Op(5, "f", "elementwise", bytes_read=6e5, bytes_written=1e5, deps=(2,))]
    reuse = l2_reuse(ops, toy_gpu)
    assert reuse.hits == {2: 4e5}
    assert reuse.working_set_bytes == pytest.approx(4.8e6)
    # a smaller d: e's distance 4e5 + 5e5 (c) + 1e5 (d) = 1 MB fits; f reads c's 1e5 of its 6e5
    ops[3] = Op(3, "d", "copy", bytes_read=5e4, bytes_written=5e4)
    assert l2_reuse(ops, toy_gpu).hits == {2: 4e5, 4: 4e5, 5: 1e5}


def test_the_simulator_prices_l2_hits(toy_gpu):
    # the same 4e5-byte op alone (from HBM: the trace's 1.6 MB working set exceeds the toy L2)
    # and after its producer: its read hits L2, so it waits on L2's latency (1 us, not HBM's
    # 2 us); its write still drains to HBM. Plus 1 us of kernel overhead each.
    ops = [Op(0, "a", "elementwise", dtype="fp32", bytes_read=4e5, bytes_written=4e5),
           Op(1, "c", "elementwise", dtype="fp32", bytes_read=4e5, bytes_written=4e5,
              deps=(0,))]
    costs = cost_ops(ops, toy_gpu, RooflineCostModel(params=IDEAL))
    assert costs[0].t_calc_s == pytest.approx(2e-6 + 8e5 / 100e9 + 1e-6)
    assert costs[1].t_calc_s == pytest.approx(1e-6 + 4e5 / 100e9 + 4e5 / 1e12 + 1e-6)
    assert costs[1].detail["l2_hit_bytes"] == 4e5


def test_decode_attention_streams_the_kv_cache(toy_gpu):
    # b=1, 8 query heads over 2 KV heads, 65536 cached tokens, d=64, bf16:
    # K and V = 65536 * 2 * 64 * 2 * 2 B = 33.6 MB from HBM; Q and O are 2 kB
    r = attention_times(toy_gpu, IDEAL, b=1, h_q=8, h_kv=2, s_q=1, s_k=65536, d=64,
                        causal=True, dtype="bf16", clock_mode="locked")
    nbytes = 64 * (2 * 8 * 1 + 2 * 2 * 65536) * 2
    pair = 4 * 64 / 1e12  # MMA only: no SFU rate in the toy spec, no softmax ops
    assert float(r["t_memory_s"]) == pytest.approx(2e-6 + nbytes / 100e9)
    assert float(r["t_s"]) == pytest.approx(max(2e-6 + nbytes / 100e9, 8 * 65536 * pair / 2))


def test_prefill_attention_counts_causal_blocks(toy_gpu):
    # s=256: 2 query blocks of 128, causal: 1 + 2 = 3 key blocks of 128x128 pairs per head;
    # 2 CTAs (1 head) on 2 units: 1 wave of 1.5 blocks' pairs at 4*64 FLOP per pair
    r = attention_times(toy_gpu, IDEAL, b=1, h_q=1, h_kv=1, s_q=256, s_k=256, d=64,
                        causal=True, dtype="bf16", clock_mode="locked")
    assert float(r["t_compute_s"]) == pytest.approx(1.5 * 128 * 128 * 4 * 64 / 1e12)


def test_fa3_overlaps_the_softmax_with_the_mmas(toy_gpu):
    # s=1024, 1 head: 8 query blocks = 8 CTAs on 2 units (4 waves), each 36 * 128^2 / 8 pairs;
    # MMA 4 * 64 / 1 TFLOP/s = 0.256 ns per pair, softmax 100 FP32 ops / 0.25 TFLOP/s = 0.4 ns
    params = IDEAL.replace(softmax_ops_per_pair=100.0)
    shape = {"b": 1, "h_q": 1, "h_kv": 1, "s_q": 1024, "s_k": 1024, "d": 64, "causal": True,
             "dtype": "bf16", "clock_mode": "locked"}
    pairs = 36 * 128 * 128 / 8
    fa2 = attention_times(toy_gpu, params, **shape)
    assert float(fa2["t_compute_s"]) == pytest.approx(4 * pairs * (0.256e-9 + 0.4e-9))
    fa3 = attention_times(_with_compute(toy_gpu, attention_kernel="fa3"), params, **shape)
    fill = 128 * 128 * 0.4e-9  # the first block's softmax has no MMA to hide under
    assert float(fa3["t_compute_s"]) == pytest.approx(4 * (fill + pairs * 0.4e-9))


def test_prefill_mmas_run_at_the_kernels_own_measured_efficiency(toy_gpu):
    # the spec cites 50 % for its fa3 kernel: MMA 0.256 / 0.5 = 0.512 ns per pair, now above
    # the 0.4 ns softmax; a decode of the same spec keeps the GEMM's efficiency (1.0 here)
    params = IDEAL.replace(softmax_ops_per_pair=100.0)
    spec = _with_compute(toy_gpu, attention_kernel="fa3", attention_mma_efficiency=0.5)
    shape = {"b": 1, "h_q": 1, "h_kv": 1, "s_k": 1024, "d": 64, "causal": True,
             "dtype": "bf16", "clock_mode": "locked"}
    prefill = attention_times(spec, params, s_q=1024, **shape)
    fill = 128 * 128 * 0.4e-9
    assert float(prefill["t_compute_s"]) == pytest.approx(4 * (fill + 36 * 128 * 128 / 8
                                                                 * 0.512e-9))
    decode = attention_times(spec, params, s_q=1, **shape)
    plain = attention_times(_with_compute(toy_gpu, attention_kernel="fa3"), params, s_q=1,
                            **shape)
    assert float(decode["t_s"]) == float(plain["t_s"])


def test_decode_splits_the_kv_cache_over_idle_sms(toy_gpu):
    # one sequence, one KV head: 2 splits keep both units streaming (1 % each by Little's law)
    params = IDEAL.replace(inflight_bytes_per_unit=1000.0)
    r = attention_times(toy_gpu, params, b=1, h_q=1, h_kv=1, s_q=1, s_k=4096, d=64, causal=True,
                        dtype="bf16", clock_mode="locked")
    nbytes = 64 * (2 * 1 + 2 * 4096) * 2
    assert float(r["t_memory_s"]) == pytest.approx(2e-6 + nbytes / (100e9 * 0.01))


def test_ring_all_reduce_picks_the_simple_protocol_at_zero_latency(toy_gpu):
    r = collective_times(toy_gpu, IDEAL, kind="allreduce", size_bytes=1e9, num_ranks=4)
    assert float(r["t_s"]) == pytest.approx(2 * 3 / 4 * 1e9 / 100e9)
    assert not bool(r["nvls"])


def test_nvls_all_reduce_moves_s_times_one_plus_one_over_n(toy_gpu):
    link = dataclasses.replace(toy_gpu.links[0], in_network_reduction=True)
    spec = dataclasses.replace(toy_gpu, links=(link,))
    r = collective_times(spec, IDEAL, kind="allreduce", size_bytes=1e9, num_ranks=4)
    assert bool(r["nvls"]) and float(r["t_s"]) == pytest.approx(1.25 * 1e9 / 100e9)


def test_link_efficiency_grows_with_ring_steps(toy_gpu):
    # eff = 0.8 * steps / (steps + 1): an all-gather on 2 GPUs has 1 step (0.4), on 8 seven
    # (0.7); an all-reduce on 2 GPUs two (0.8 * 2/3), so it keeps the link busier
    params = IDEAL.replace(link_efficiency=0.8, link_efficiency_drop=1.0)
    two = collective_times(toy_gpu, params, kind="allgather", size_bytes=1e9, num_ranks=2)
    eight = collective_times(toy_gpu, params, kind="allgather", size_bytes=1e9, num_ranks=8)
    reduce = collective_times(toy_gpu, params, kind="allreduce", size_bytes=1e9, num_ranks=2)
    assert float(two["t_s"]) == pytest.approx(0.5 * 1e9 / (100e9 * 0.4))
    assert float(eight["t_s"]) == pytest.approx(7 / 8 * 1e9 / (100e9 * 0.7))
    assert float(reduce["t_s"]) == pytest.approx(1e9 / (100e9 * 0.8 * 2 / 3))


def test_nvls_reduces_only_the_types_the_switch_supports(toy_gpu):
    # ncclNvlsSupported: fp16 / bf16 / fp32 / fp64 / 32- and 64-bit integers; never 8-bit types
    link = dataclasses.replace(toy_gpu.links[0], in_network_reduction=True)
    hopper = _with_compute(dataclasses.replace(toy_gpu, links=(link,)), compute_capability=9.0)
    for dtype, nvls in (("bf16", True), ("fp32", True), ("int8", False), ("fp8", False),
                        (None, True)):
        r = collective_times(hopper, IDEAL, kind="allreduce", size_bytes=1e9, num_ranks=4,
                             dtype=dtype)
        assert bool(r["nvls"]) is nvls, dtype
    ring = collective_times(hopper, IDEAL, kind="allreduce", size_bytes=1e9, num_ranks=4,
                            dtype="int8")
    assert float(ring["t_s"]) == pytest.approx(1.5e9 / 100e9)  # ring: 2 (n-1)/n S


def test_protocol_latencies_follow_nccl_tuning(toy_gpu):
    # 1 byte: LL wins with NCCL 2.28's ring latency 6.6 us + 2 steps * 0.6 us (NVLink)
    params = IDEAL.replace(collective_latency_scale=1.0)
    r = collective_times(toy_gpu, params, kind="allgather", size_bytes=1.0, num_ranks=3)
    assert float(r["t_latency_s"]) == pytest.approx(6.6e-6 + 2 * 0.6e-6)
    pcie = dataclasses.replace(toy_gpu.links[0], kind="pcie")  # LL: 6.6 us + 2 * 1.0 us
    r = collective_times(dataclasses.replace(toy_gpu, links=(pcie,)), params, kind="allgather",
                         size_bytes=1.0, num_ranks=3)
    assert float(r["t_latency_s"]) == pytest.approx(6.6e-6 + 2 * 1.0e-6)


def test_nccl_architecture_constants_come_from_the_compute_capability(toy_gpu):
    # Hopper: NVLS at NCCL's 0.85 efficiency still beats the ring's 1.5 S at n = 4 (1.25 S)
    link = dataclasses.replace(toy_gpu.links[0], in_network_reduction=True)
    hopper = _with_compute(dataclasses.replace(toy_gpu, links=(link,)), compute_capability=9.0)
    r = collective_times(hopper, IDEAL, kind="allreduce", size_bytes=1e9, num_ranks=4)
    assert bool(r["nvls"]) and float(r["t_s"]) == pytest.approx(1.25e9 / (100e9 * 0.85))
    # Ampere: no NVLS; LL's bus bandwidth is capped at 87.7 GB/s (300 GB/s link: 150 uncapped)
    fast = dataclasses.replace(link, bandwidth_bytes_per_s=300e9)
    ampere = _with_compute(dataclasses.replace(toy_gpu, links=(fast,)), compute_capability=8.0)
    params = IDEAL.replace(collective_latency_scale=1.0)
    r = collective_times(ampere, params, kind="allreduce", size_bytes=1e5, num_ranks=2)
    assert not bool(r["nvls"])
    assert float(r["t_s"]) == pytest.approx(6.6e-6 + 2 * 0.6e-6 + 1e5 / 87.7e9)


def test_gpu_specs_carry_clocks_sfu_and_kernel_style():
    h100 = load_spec("h100")
    assert h100.compute.clocks == Clocks(max_hz=1.98e9, tensor_hz=1.83e9)
    assert h100.compute.sfu_ops_per_cycle_per_unit == 16 and h100.compute.gemm_persistent
    assert h100.link("nvlink").in_network_reduction
    a100 = load_spec("a100")
    assert not a100.compute.gemm_persistent and not a100.link("nvlink").in_network_reduction
    assert load_spec("a100-pcie").main_memory.bandwidth_bytes_per_s == 1935e9


def test_tensor_clock_above_max_is_rejected():
    data = read_yaml(Path(load_spec("h100").path))
    data["compute"]["clocks"]["tensor"] = "2.5 GHz"
    with pytest.raises(InputError, match="compute.clocks.tensor"):
        parse_spec(data, file="x.yaml")


def test_unknown_clock_key_is_rejected():
    data = read_yaml(Path(load_spec("h100").path))
    data["compute"]["clocks"]["boost"] = "2 GHz"
    with pytest.raises(InputError, match="compute.clocks.boost: unknown field"):
        parse_spec(data, file="x.yaml")


def test_models_price_ops_on_real_gpus():
    op = make_op("gemm", "bf16", {"m": 4096, "n": 4096, "k": 4096})
    h100 = load_spec("h100")
    calibrated = CalibratedCostModel().cost(op, h100)
    datasheet = RooflineCostModel(params="datasheet").cost(op, h100)
    legacy = RooflineCostModel().cost(op, h100)
    assert calibrated.bound == "compute" and calibrated.detail["clock_mode"] == "default"
    # 137 GFLOP at <= 989 TFLOP/s: at least 139 us, and not absurdly more
    assert 139e-6 < calibrated.t_calc_s < 300e-6
    assert datasheet.t_calc_s > 0 and legacy.t_calc_s > 0
    assert np.isfinite(A100_FIT.matrix_efficiency)
    with pytest.raises(InputError, match="clock mode"):
        RooflineCostModel(clock_mode="turbo")
