"""A hand-written CPU calibration with round numbers, for the CPU sub-model tests."""

from __future__ import annotations

import math

from sim.cpu_calibration import (
    AttentionCoefficients,
    CpuCalibration,
    GemmCoefficients,
    Interval,
    StreamLevel,
)
from sim.trace import Op, TensorMeta

KIB, MIB = 2**10, 2**20

TOY_CAL = CpuCalibration(
    threads=1,
    dispatch_s=1e-6,
    levels=(StreamLevel("l1", 32 * KIB, 400e9, 1e-9), StreamLevel("llc", 8 * MIB, 100e9, 10e-9),
            StreamLevel("dram", math.inf, 20e9, 100e-9)),
    fault_threshold_bytes=32 * MIB,
    fault_bytes_per_s=4e9,
    strided_fraction=0.25,
    floor_s={"elementwise": 2e-6, "reduction": 3e-6, "other": 5e-6},
    op_floor_s={"gelu": 4e-6},
    element_s={"gelu": 1e-9},
    row_s={"_softmax": 10e-9},
    gemm={"fp32": GemmCoefficients(overhead_s=2e-6, a_element_s=1e-10, b_element_s=2e-10,
                                   c_element_s=3e-10, flops_per_s=1e11, gemv_overhead_s=1e-6,
                                   gemv_element_s=5e-10, gemv_output_s=2e-9,
                                   stream_fraction=0.5, cold_call_s=10e-6,
                                   gemv_stream_fraction=0.8)},
    attention={"fp32": AttentionCoefficients(overhead_s=3e-6, head_s=1e-6, block_s=2e-6,
                                             pair_s=1e-9, kv_element_s=1e-10,
                                             flops_per_s=5e10, decode_head_s=0.5e-6,
                                             decode_kv_element_s=2e-10,
                                             kv_lines_in_flight=20, cold_call_s=15e-6)},
    intervals={"gemm": Interval(0.8, 1.2, 10), "elementwise": Interval(0.9, 1.3, 10),
               "all": Interval(0.5, 2.0, 20)},
)


def gemm_op(m: int, n: int, k: int, b: int = 1, dtype: str = "fp32") -> Op:
    """A GEMM op as a trace carries it (bytes: A and B read, C written)."""
    size = 4 if dtype == "fp32" else 2
    return Op(id=0, name="aten::mm" if b == 1 else "aten::bmm", category="gemm",
              flops=2.0 * b * m * n * k, bytes_read=float(b * (m * k + k * n) * size),
              bytes_written=float(b * m * n * size), dtype=dtype,
              inputs=(TensorMeta((b, m, k), dtype), TensorMeta((b, k, n), dtype)),
              outputs=(TensorMeta((b, m, n), dtype),), attrs={"b": b, "m": m, "n": n, "k": k})


def stream_op(name: str, shape: tuple[int, ...], category: str = "elementwise",
              inputs: int = 1, dtype: str = "fp32", **attrs) -> Op:
    """An op over ``inputs`` tensors of ``shape`` writing one of the same shape."""
    nbytes = math.prod(shape) * 4.0
    tensor = TensorMeta(shape, dtype)
    return Op(id=0, name=f"aten::{name}", category=category, bytes_read=inputs * nbytes,
              bytes_written=nbytes, dtype=dtype, inputs=(tensor,) * inputs, outputs=(tensor,),
              attrs=attrs)


def embedding_op(n: int, vocab: int, d: int) -> Op:
    """An fp32 F.embedding of ``n`` indices into a (vocab, d) table, as a trace carries it."""
    row = d * 4
    return Op(id=0, name="aten::embedding", category="embedding", dtype="fp32",
              bytes_read=n * row + 8 * n, bytes_written=n * row,
              inputs=(TensorMeta((vocab, d), "fp32"), TensorMeta((1, n), "int64")),
              outputs=(TensorMeta((1, n, d), "fp32"),),
              attrs={"num_indices": n, "vocab": vocab, "d": d})
