"""The CPU sub-model (sim.cost.cpu) on a hand-written calibration: every term by hand."""

from __future__ import annotations

import dataclasses
import math

import pytest

from sim.cost import CalibratedCostModel, RooflineCostModel, cost_ops
from sim.cost.cpu import (
    Residency,
    cpu_op_cost,
    flash_blocks,
    gemm_coefficients,
    tail_elements,
    trace_residency,
)
from sim.trace import Op, TensorMeta
from tests.cpu_fixtures import MIB, TOY_CAL, embedding_op, gemm_op, stream_op


def test_gemm_is_bilinear_in_its_operands_plus_flops():
    op = gemm_op(m=64, n=128, k=256)  # working set 224 KiB: served by the llc
    cost = cpu_op_cost(op, TOY_CAL)
    b_bytes = 128 * 256 * 4
    t_calc = (2e-6 + 1e-10 * 64 * 256 + 2e-10 * 128 * 256 + 3e-10 * 64 * 128
              + 2 * 64 * 128 * 256 / 1e11 + b_bytes / (100e9 * 0.5))
    assert cost.t_pre_s == pytest.approx(1e-6)
    assert cost.t_calc_s == pytest.approx(t_calc)
    assert cost.t_post_s == 0.0


def test_gemm_computes_whole_vectors_of_output_columns():
    # AVX-512 (64 B): 16 fp32 lanes, so n = 130 costs the micro-kernel 144 columns of FLOPs
    cal = dataclasses.replace(TOY_CAL, vector_bytes=64.0)
    aligned = cpu_op_cost(gemm_op(m=64, n=128, k=256), cal).t_calc_s
    ragged = cpu_op_cost(gemm_op(m=64, n=130, k=256), cal).t_calc_s
    per_column = 2e-10 * 256 + 3e-10 * 64 + 256 * 4 / (100e9 * 0.5)  # B column, C column, B bytes
    assert ragged - aligned == pytest.approx(2 * per_column + 2 * 64 * 16 * 256 / 1e11)


def test_matrix_vector_product_streams_b_from_the_level_holding_it():
    op = gemm_op(m=1, n=1024, k=1024)  # 4 MiB of B: llc
    # BLAS gemv streams B at its own fraction (0.8; the GEMM path, which packs B: 0.5)
    warm = cpu_op_cost(op, TOY_CAL).t_calc_s
    assert warm == pytest.approx(1e-6 + 5e-10 * 2**20 + 2e-9 * 1024 + 4 * MIB / (100e9 * 0.8))
    cold = cpu_op_cost(op, TOY_CAL, Residency(weight_reuse_bytes=64 * MIB)).t_calc_s
    assert cold == pytest.approx(1e-6 + 5e-10 * 2**20 + 2e-9 * 1024 + 4 * MIB / (20e9 * 0.8))
    # a spec from before the gemv fraction existed: stream_fraction serves both paths
    old = dataclasses.replace(TOY_CAL.gemm["fp32"], gemv_stream_fraction=math.nan)
    cal = dataclasses.replace(TOY_CAL, gemm={"fp32": old})
    assert cpu_op_cost(op, cal).t_calc_s == pytest.approx(
        warm - 4 * MIB / (100e9 * 0.8) + 4 * MIB / (100e9 * 0.5))


def test_trace_residency_sums_the_weights_of_b1_gemms_only():
    ops = [gemm_op(1, 100, 10), gemm_op(1, 50, 10), gemm_op(4, 7, 7, b=3)]
    assert trace_residency(ops).weight_reuse_bytes == (100 + 50) * 10 * 4


def test_flash_blocks_skip_whole_key_blocks_past_the_diagonal():
    assert flash_blocks(100, 100, causal=False) == (4, 100 * 100, 4 * 100)
    # s_q = 1000 -> 256-row query blocks; causal keys rounded up to 512-key blocks
    blocks, pairs, keys = flash_blocks(1000, 1000, causal=True)
    assert blocks == 4
    assert keys == 512 + 512 + 1000 + 1000
    assert pairs == 256 * 512 + 256 * 512 + 256 * 1000 + 232 * 1000


def test_gemm_coefficients_follow_the_layout_of_b():
    # a B stored k x n (Conv1D) has its own coefficients, else the aten op's, else the dtype's
    kn_coef = dataclasses.replace(TOY_CAL.gemm["fp32"], overhead_s=9e-6)
    addmm_coef = dataclasses.replace(TOY_CAL.gemm["fp32"], overhead_s=7e-6)
    cal = dataclasses.replace(TOY_CAL, gemm={**TOY_CAL.gemm, "addmm_kn.fp32": kn_coef,
                                             "addmm.fp32": addmm_coef})
    op = dataclasses.replace(gemm_op(64, 128, 128), name="aten::addmm")
    kn = dataclasses.replace(op, attrs={**op.attrs, "b_layout": "kn"})
    nk = dataclasses.replace(op, attrs={**op.attrs, "b_layout": "nk"})
    assert gemm_coefficients(cal, kn) is kn_coef
    assert gemm_coefficients(cal, nk) is addmm_coef and gemm_coefficients(cal, op) is addmm_coef
    assert gemm_coefficients(TOY_CAL, kn) is TOY_CAL.gemm["fp32"]
    assert cpu_op_cost(kn, cal).t_calc_s == pytest.approx(cpu_op_cost(nk, cal).t_calc_s + 2e-6)


def test_a_cold_gemm_call_pays_its_cold_call_cost_and_reads_b_from_main_memory():
    # a micro-benchmark's first call after other points: code, library state and data evicted
    op = gemm_op(64, 128, 128)
    warm = cpu_op_cost(op, TOY_CAL).t_calc_s
    b_bytes = 128 * 128 * 4
    cold = cpu_op_cost(op, TOY_CAL, Residency(math.inf, math.inf, cold=True)).t_calc_s
    # warm: its 128 KiB working set in the llc (100 GB/s); cold: B from dram (20 GB/s)
    assert cold == pytest.approx(warm + 10e-6 + b_bytes / (0.5 * 20e9) - b_bytes / (0.5 * 100e9))


def test_a_cold_call_whose_b_exceeds_the_last_cache_pays_no_cold_call_cost():
    # 16 MiB of B cannot be cached (llc: 8 MiB): the call streams it from main memory, cold
    # or not, and the stream hides the cold start
    op = gemm_op(1, 4096, 1024)
    in_step = cpu_op_cost(op, TOY_CAL, Residency(weight_reuse_bytes=64 * MIB)).t_calc_s
    cold = cpu_op_cost(op, TOY_CAL, Residency(math.inf, math.inf, cold=True)).t_calc_s
    assert cold == pytest.approx(in_step)
    assert in_step == pytest.approx(1e-6 + 5e-10 * 4096 * 1024 + 2e-9 * 4096
                                    + 16 * MIB / (20e9 * 0.8))


def test_a_gemm_streaming_b_from_main_memory_pays_its_dram_call_cost():
    coef = dataclasses.replace(TOY_CAL.gemm["fp32"], dram_call_s=3e-6)
    cal = dataclasses.replace(TOY_CAL, gemm={"fp32": coef})
    for op in (gemm_op(1, 1024, 1024), gemm_op(64, 128, 128)):  # both paths
        cached = cpu_op_cost(op, cal).t_calc_s
        from_dram = cpu_op_cost(op, cal, Residency(weight_reuse_bytes=64 * MIB)).t_calc_s
        b_bytes = op.attrs["n"] * op.attrs["k"] * 4
        fraction = 0.8 if op.attrs["m"] == 1 else 0.5
        assert from_dram - cached == pytest.approx(
            3e-6 + b_bytes / (20e9 * fraction) - b_bytes / (100e9 * fraction))


def test_a_gemv_streaming_b_from_main_memory_pays_per_row_of_b_as_stored():
    coef = dataclasses.replace(TOY_CAL.gemm["fp32"], gemv_dram_row_s=40e-9)
    cal = dataclasses.replace(TOY_CAL, gemm={"fp32": coef})
    in_memory = Residency(weight_reuse_bytes=64 * MIB)
    nk = gemm_op(1, 4096, 256)  # F.linear's weight: 4096 rows of 256
    kn = dataclasses.replace(nk, attrs={**nk.attrs, "b_layout": "kn"})  # x @ w: 256 rows
    base = cpu_op_cost(nk, TOY_CAL, in_memory).t_calc_s
    assert cpu_op_cost(nk, cal, in_memory).t_calc_s == pytest.approx(base + 4096 * 40e-9)
    assert cpu_op_cost(kn, cal, in_memory).t_calc_s == pytest.approx(base + 256 * 40e-9)
    # B in a cache: no rows to stream from main memory; m > 1: the GEMM path has no such term
    assert cpu_op_cost(nk, cal).t_calc_s == pytest.approx(cpu_op_cost(nk, TOY_CAL).t_calc_s)
    gemm = gemm_op(8, 4096, 256)
    assert (cpu_op_cost(gemm, cal, in_memory).t_calc_s
            == pytest.approx(cpu_op_cost(gemm, TOY_CAL, in_memory).t_calc_s))


def test_decode_attention_uses_its_own_per_head_and_kv_costs():
    op = Op(id=0, name="aten::_scaled_dot_product_flash_attention_for_cpu",
            category="attention", dtype="fp32",
            attrs={"b": 1, "h_q": 4, "h_kv": 4, "s_q": 1, "s_k": 100, "d": 32, "causal": False})
    kv_elements = 4 * 100 * 64
    expected = 3e-6 + 1e-9 * 4 * 100 + 0.5e-6 * 4 + 2e-10 * kv_elements + kv_elements * 4 / 400e9
    assert cpu_op_cost(op, TOY_CAL).t_calc_s == pytest.approx(expected)


def test_attention_reads_k_and_v_once_from_their_level_and_again_from_cache():
    # GQA decode from main memory: 2 KV heads read once, latency-bound (20 lines in flight x
    # 64 B per 100 ns beats 20 GB/s); the 6 further query heads find one head's K and V
    # (100 keys x 64 x 4 B = 25 KiB) in l1 at its bandwidth
    op = Op(id=0, name="aten::_scaled_dot_product_flash_attention_for_cpu",
            category="attention", dtype="fp32",
            attrs={"b": 1, "h_q": 8, "h_kv": 2, "s_q": 1, "s_k": 100, "d": 32, "causal": False})
    first, again = 2 * 100 * 64 * 4, 6 * 100 * 64 * 4
    expected = (3e-6 + 1e-9 * 8 * 100 + 0.5e-6 * 8 + 2e-10 * 8 * 100 * 64
                + first * 100e-9 / (20 * 64) + again / 400e9)
    cold = cpu_op_cost(op, TOY_CAL, Residency(reuse_bytes=64 * MIB))
    assert cold.t_calc_s == pytest.approx(expected)
    assert cold.detail["memory_level"] == "dram"
    # the llc serves at its bandwidth: 20 lines per 10 ns would allow 128 GB/s
    warm = cpu_op_cost(op, TOY_CAL, Residency(reuse_bytes=1 * MIB))
    assert warm.t_calc_s == pytest.approx(expected - first * 100e-9 / (20 * 64) + first / 100e9)


def test_a_cold_attention_call_pays_its_cold_call_cost_unless_k_and_v_stream_from_memory():
    def sdpa(s_k):
        return Op(id=0, name="aten::_scaled_dot_product_flash_attention_for_cpu",
                  category="attention", dtype="fp32",
                  attrs={"b": 1, "h_q": 4, "h_kv": 4, "s_q": 1, "s_k": s_k, "d": 32,
                         "causal": False})

    evicted, cold = Residency(math.inf, math.inf), Residency(math.inf, math.inf, cold=True)
    small = sdpa(100)  # 100 KiB of K and V: a cache holds them, the cold start shows
    assert (cpu_op_cost(small, TOY_CAL, cold).t_calc_s
            == pytest.approx(cpu_op_cost(small, TOY_CAL, evicted).t_calc_s + 15e-6))
    large = sdpa(20_000)  # 20 MiB: streamed from main memory cold or not
    assert (cpu_op_cost(large, TOY_CAL, cold).t_calc_s
            == pytest.approx(cpu_op_cost(large, TOY_CAL, evicted).t_calc_s))


def test_streaming_op_takes_the_slower_of_bytes_and_elements_plus_its_floor():
    add = stream_op("add", (1024, 1024), inputs=2)  # 12 MiB: dram
    assert cpu_op_cost(add, TOY_CAL).t_calc_s == pytest.approx(2e-6 + 12 * MIB / 20e9)
    gelu = stream_op("gelu", (256, 256))  # 512 KiB (llc); 65536 elements x 1 ns > bytes
    assert cpu_op_cost(gelu, TOY_CAL).t_calc_s == pytest.approx(4e-6 + 65536e-9)
    assert cpu_op_cost(gelu, TOY_CAL).bound == "compute"


def test_row_wise_ops_pay_per_row_and_strided_copies_pay_bandwidth():
    softmax = stream_op("_softmax", (64, 16), category="reduction")
    assert cpu_op_cost(softmax, TOY_CAL).t_calc_s == pytest.approx(3e-6 + 64 * 10e-9)
    strided = stream_op("clone", (512, 512), category="copy", contiguous=False)
    assert cpu_op_cost(strided, TOY_CAL).t_calc_s == pytest.approx(
        5e-6 + 2 * 2**20 / (100e9 * 0.25))  # no copy floor: falls back on "other"


def test_an_embedding_reads_its_distinct_rows_at_the_gather_fraction():
    # 8 indices into 4 rows of 4 KiB: 4 (1 - (3/4)^8) = 3.6 distinct rows read at random
    # offsets (at half the bandwidth); the repeats hit cache; output and indices stream
    row = 1024 * 4
    op = embedding_op(8, 4, 1024)
    distinct = 4 * (1 - 0.75**8)
    streamed = 8 * row + 64 + distinct * row / 0.5  # 64 KiB in all: the llc's, 100 GB/s
    cal = dataclasses.replace(TOY_CAL, gather_fraction=0.5)
    assert cpu_op_cost(op, cal).t_calc_s == pytest.approx(5e-6 + streamed / 100e9)
    backward = dataclasses.replace(op, attrs={**op.attrs, "backward": True})  # a scatter-add
    assert cpu_op_cost(backward, cal).t_calc_s == pytest.approx(5e-6 + op.bytes_total / 100e9)


def test_only_a_gathered_rows_first_ramp_bytes_miss():
    # rows of 4 KiB, a ramp of 1 KiB: each distinct row pays the gather on 1 KiB, streams 3
    op = embedding_op(8, 4, 1024)
    distinct = 4 * (1 - 0.75**8)
    cal = dataclasses.replace(TOY_CAL, gather_fraction=0.5, gather_ramp_bytes=1024.0)
    streamed = 8 * 4096 + 64 + distinct * 4096 + distinct * 1024 * (1 / 0.5 - 1)
    assert cpu_op_cost(op, cal).t_calc_s == pytest.approx(5e-6 + streamed / 100e9)
    short = embedding_op(8, 4, 128)  # rows of 512 B, shorter than the ramp: all of each misses
    whole = dataclasses.replace(cal, gather_ramp_bytes=math.inf)
    assert cpu_op_cost(short, cal).t_calc_s == cpu_op_cost(short, whole).t_calc_s


def test_an_embeddings_gather_misses_add_to_its_row_loop():
    # 1000 indices into 1000 rows of 256 B (a 250 KiB table in the llc): the row loop (1000 x
    # 50 ns = 50 us) binds over the stream (0.43 MB / 100 GB/s = 4.3 us); the distinct rows'
    # misses, 632 x 256 B x (1 / 0.25 - 1) / 100 GB/s = 4.9 us, come on top
    op = embedding_op(1000, 1000, 64)
    distinct = 1000 * (1 - (1 - 1 / 1000) ** 1000)
    cal = dataclasses.replace(TOY_CAL, gather_fraction=0.25, row_s={"embedding": 50e-9})
    misses = distinct * 256 * 3 / 100e9
    assert cpu_op_cost(op, cal).t_calc_s == pytest.approx(5e-6 + 1000 * 50e-9 + misses)


def test_a_decode_steps_kv_cache_append_reads_the_cache_from_where_the_weights_are():
    # HF's DynamicCache appends by cat: the step reads the cache a step after it was written,
    # with every weight of the step touched since, as a weight is
    cat = stream_op("cat", (1, 12, 64, 64), category="copy", kv_cache="append")
    plain = dataclasses.replace(cat, attrs={})
    step = Residency(weight_reuse_bytes=64 * MIB)
    from_memory = cpu_op_cost(plain, TOY_CAL, Residency(reuse_bytes=64 * MIB)).t_calc_s
    assert cpu_op_cost(cat, TOY_CAL, step).t_calc_s == pytest.approx(from_memory)
    assert cpu_op_cost(plain, TOY_CAL, step).t_calc_s < from_memory  # other copies: warm
    assert cpu_op_cost(cat, TOY_CAL).t_calc_s == cpu_op_cost(plain, TOY_CAL).t_calc_s


def test_a_strided_copy_pays_per_output_row():
    # a (4096, 4) -> (4, 4096) transpose is 4 long output rows, (4, 4096) -> (4096, 4) is 4096
    # short ones: each row is an inner loop of strided loads
    cal = dataclasses.replace(TOY_CAL, op_floor_s={"clone_strided": 1e-6},
                              element_s={"clone_strided": 1e-9}, row_s={"clone_strided": 5e-9})
    for rows, cols in ((4, 4096), (4096, 4)):
        out = TensorMeta((rows, cols), "fp32")
        op = Op(id=0, name="aten::clone", category="copy", dtype="fp32", bytes_read=65536.0,
                bytes_written=65536.0, inputs=(TensorMeta((cols, rows), "fp32"),),
                outputs=(out,), attrs={"contiguous": False})
        assert cpu_op_cost(op, cal).t_calc_s == pytest.approx(1e-6 + 16384e-9 + rows * 5e-9)


def test_strided_copies_have_their_own_floor_and_element_time():
    # a transposing clone runs another loop than a contiguous one: key clone_strided
    cal = dataclasses.replace(TOY_CAL, op_floor_s={"clone": 1e-6, "clone_strided": 3e-6},
                              element_s={"clone_strided": 1e-9})
    strided = stream_op("clone", (512, 512), category="copy", contiguous=False)
    assert cpu_op_cost(strided, cal).t_calc_s == pytest.approx(3e-6 + 512 * 512 * 1e-9)
    contiguous = stream_op("clone", (512, 512), category="copy")  # 2 MiB: llc, 100 GB/s
    assert cpu_op_cost(contiguous, cal).t_calc_s == pytest.approx(1e-6 + 2 * 2**20 / 100e9)


def test_row_tails_past_the_last_vector_chunk_run_scalar():
    # AVX-512 (64 B): amax reduces 4 vectors of 16 fp32 at a time, a softmax one vector, a
    # bf16 vector holds 32 elements
    assert tail_elements(stream_op("amax", (10, 88), category="reduction"), 64) == 10 * 24
    assert tail_elements(stream_op("amax", (10, 128), category="reduction"), 64) == 0
    assert tail_elements(stream_op("_softmax", (10, 88), category="reduction"), 64) == 10 * 8
    bf16 = stream_op("_softmax", (3, 62), category="reduction", dtype="bf16")
    assert tail_elements(bf16, 64) == 3 * 30
    assert tail_elements(stream_op("_softmax", (3, 64), category="reduction",
                                   dtype="bf16"), 64) == 0
    assert tail_elements(stream_op("add", (10, 88)), 64) == 0  # not row-wise
    assert tail_elements(stream_op("amax", (10, 88), category="reduction"), 0) == 0
    # priced per tail element on top of the rows: 64 rows x 10 ns + 64 x 8 x 2 ns
    cal = dataclasses.replace(TOY_CAL, vector_bytes=64, tail_s={"_softmax": 2e-9})
    softmax = stream_op("_softmax", (64, 24), category="reduction")
    assert cpu_op_cost(softmax, cal).t_calc_s == pytest.approx(3e-6 + 64 * 10e-9
                                                               + 64 * 8 * 2e-9)


def test_fresh_outputs_above_the_mmap_threshold_fault_in_their_pages():
    big = stream_op("add", (64, 2**20), inputs=2)  # 256 MiB each
    out = 256 * MIB
    assert cpu_op_cost(big, TOY_CAL).t_calc_s == pytest.approx(2e-6 + 3 * out / 20e9
                                                               + out / 4e9)
    in_place = dataclasses.replace(big, name="aten::add_")
    assert cpu_op_cost(in_place, TOY_CAL).t_calc_s == pytest.approx(2e-6 + 3 * out / 20e9)


def test_model_python_is_paid_per_python_level_call_that_led_to_the_op():
    cal = dataclasses.replace(TOY_CAL, framework_s=2e-6)
    plain = stream_op("add", (4, 4), inputs=2)  # a trace without host_calls: one call per op
    assert cpu_op_cost(plain, cal).t_pre_s == pytest.approx(TOY_CAL.dispatch_s + 2e-6)
    three = stream_op("add", (4, 4), inputs=2, host_calls=3)
    assert cpu_op_cost(three, cal).t_pre_s == pytest.approx(TOY_CAL.dispatch_s + 6e-6)
    issued_from_cpp = stream_op("view", (4, 4), category="view", host_calls=0)
    assert cpu_op_cost(issued_from_cpp, cal).t_pre_s == pytest.approx(TOY_CAL.dispatch_s)


def test_views_cost_dispatch_only():
    view = Op(id=0, name="aten::view", category="view",
              inputs=(TensorMeta((4, 4), "fp32"),), outputs=(TensorMeta((16,), "fp32"),))
    cost = cpu_op_cost(view, TOY_CAL)
    assert (cost.t_pre_s, cost.t_calc_s, cost.bound) == (1e-6, 0.0, "host")


def test_calibrated_model_uses_the_cpu_submodel_only_on_a_calibrated_cpu(toy_cpu, toy_gpu):
    op = gemm_op(64, 128, 256)
    spec = dataclasses.replace(toy_cpu, cpu_calibration=TOY_CAL)
    assert CalibratedCostModel().cost(op, spec) == cpu_op_cost(op, TOY_CAL)
    # the plain roofline ignores the calibration; GPUs and uncalibrated CPUs are unchanged
    assert RooflineCostModel().cost(op, spec) == RooflineCostModel().cost(op, toy_cpu)
    assert CalibratedCostModel().cost(op, toy_cpu) == RooflineCostModel().cost(op, toy_cpu)
    assert CalibratedCostModel().cost(op, toy_gpu).bound != "host"


def test_cost_ops_gives_the_cpu_submodel_the_trace_residency(toy_cpu):
    spec = dataclasses.replace(toy_cpu, cpu_calibration=TOY_CAL)
    weights = [gemm_op(1, 1024, 512) for _ in range(5)]  # 5 x 2 MiB of weights > 8 MiB llc
    costs = cost_ops(weights, spec, CalibratedCostModel())
    alone = cpu_op_cost(weights[0], TOY_CAL).t_calc_s  # 2 MiB alone: llc
    gemv = 1e-6 + 5e-10 * 2**19 + 2e-9 * 1024
    assert alone == pytest.approx(gemv + 2 * MIB / (100e9 * 0.8))
    assert costs[0].t_calc_s == pytest.approx(gemv + 2 * MIB / (20e9 * 0.8))
