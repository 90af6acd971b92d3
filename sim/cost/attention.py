"""Fused attention (FlashAttention-style) time: matrix FLOPs and softmax vs. reading Q, K, V, O.

FlashAttention computes softmax(Q K^T / sqrt(d)) V tile by tile on chip, so its HBM traffic is
Q, K, V read once and O written once (Dao et al., "FlashAttention", NeurIPS 2022, Theorem 2, for
head dims that fit on chip), and its work is two GEMMs over the unmasked (query, key) pairs:

    flops = 4 * b * h_q * d * pairs,  pairs = s_q * s_k  (no mask)
    causal: query i (aligned to the end of the keys) sees s_k - s_q + i + 1 keys

Grouped-query attention (h_kv < h_q) reads K and V for h_kv heads only.

**GPU** (:func:`attention_times`, vectorized; parameters in :class:`GpuParams`). Prefill runs one
CTA per (sequence, query head, block of ``_BLOCK`` queries) and walks the key blocks the causal mask
leaves. Per (query, key) pair it spends 4 d FLOP on the tensor cores (``mma``) and a softmax of one
exp2 on the special-function units and ``softmax_ops_per_pair`` FP32 operations (scale, running
max, sum, rescale of the output accumulator) on the CUDA cores (``softmax``). How the two combine
is the kernel's structure, the spec's ``attention_kernel``:

    fa2:           t_pair = mma + softmax,      t_fill = t_cta
    fa3, trtllm:   t_pair = max(mma, softmax),  t_fill = t_cta + one block's softmax
    mma     = 4 d / (peak / num_units * matrix_efficiency)
    softmax = 1 / (sfu_ops_per_cycle * clock) + softmax_ops_per_pair / (fp32 peak / num_units)
    t_prefill = waves * (t_fill + padded pairs per CTA * t_pair),  waves = ceil(CTAs / num_units)

FlashAttention-2 computes each block's softmax between its two MMAs (Dao 2023, sections 3.1-3.2).
FlashAttention-3 and TensorRT-LLM's Blackwell kernels are warp-specialized: two consumer
warpgroups ping-pong, one's softmax running under the other's MMAs, so the slower of the two
bounds a pair, and the first block's softmax has nothing to hide under (Shah et al.,
"FlashAttention-3", NeurIPS 2024, section 3.1). The MMAs run at the GEMM main-loop efficiency
(the same tensor cores), unless the spec gives the kernel's own measured figure
(``attention_mma_efficiency``: FA3 sustains 740 of H100's 989 TFLOP/s, 75 %, its paper's
abstract), which prefill then runs at; decode is bound by the cache reads and keeps the GEMM's.

Decode (one query per sequence over a KV cache of s_k tokens) runs one CTA per (sequence, KV head)
-- the query heads of a GQA group share it -- split along the KV length into as many pieces as
fill the SMs (flash-decoding; at least one ``_BLOCK`` of keys each), and streams the cache:
bytes = b * s_k * h_kv * d * 2 (K and V) * dtype bytes at the operand stream efficiency of the
busy SMs (:func:`~sim.cost.gpu_params.operand_stream_efficiency`):

    splits    = clip(ceil(num_units / (b h_kv)), 1, ceil(s_k / _BLOCK)),  CTAs = b h_kv splits
    t_decode  = max(waves * t_cta + latency + bytes / (bandwidth * efficiency),
                    waves * t_cta + b h_q s_k (mma + softmax) / busy SMs)

``t_cta`` = ``attention_cta_round_trips`` dependent main-memory round trips (block table, Q, first
K/V block, output) per CTA, in units of the spec's DRAM latency. Both phases pay
``attention_overhead_cycles`` once per op (SM cycles): a serving backend's attention is a few
kernels (KV-cache write, attention, split-KV combine) and their launch ramps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sim.cost.gpu_params import (
    GpuParams,
    cycle_clock_hz,
    operand_stream_efficiency,
    tensor_rate_scale,
)
from sim.cost.roofline import KernelTime, kernel_time, stream_time_s
from sim.hardware import HardwareSpec
from sim.units import DTYPE_BYTES

__all__ = ["attention_pairs", "attention_flops", "attention_bytes", "attention_time",
           "attention_times", "prefill_mma_efficiency"]

_BLOCK = 128  # query and key block edge of FlashAttention-2/3 kernels for head_dim <= 128
_OVERLAPPED = ("fa3", "trtllm")  # warp-specialized kernels (spec ``attention_kernel``)


def attention_pairs(s_q: int, s_k: int, causal: bool, align: str = "bottom_right") -> int:
    """Number of (query, key) pairs that are computed.

    ``bottom_right`` (FlashAttention-2, decode with a KV cache): query i of s_q sits at key
    position s_k - s_q + i. ``top_left`` (PyTorch SDPA ``is_causal=True``): query i sees keys
    0..i. With s_q == s_k both are the lower triangle, s(s+1)/2 pairs.
    """
    if not causal:
        return s_q * s_k
    if align == "top_left":
        seen = min(s_q, s_k)  # queries past s_k see all s_k keys
        return seen * (seen + 1) // 2 + (s_q - seen) * s_k
    first = s_k - s_q + 1  # keys seen by the first query
    if first >= 1:
        return s_q * first + s_q * (s_q - 1) // 2
    return s_k * (s_k + 1) // 2  # early queries see no key at all


def attention_flops(attrs: Mapping[str, Any]) -> float:
    b, h_q, s_q, s_k, d = (int(attrs[k]) for k in ("b", "h_q", "s_q", "s_k", "d"))
    pairs = attention_pairs(s_q, s_k, bool(attrs.get("causal", False)),
                            str(attrs.get("causal_align", "bottom_right")))
    return 4.0 * b * h_q * d * pairs


def attention_bytes(attrs: Mapping[str, Any], dtype: str) -> float:
    b, h_q, s_q, s_k, d = (int(attrs[k]) for k in ("b", "h_q", "s_q", "s_k", "d"))
    h_kv = int(attrs.get("h_kv", h_q))
    elements = b * d * (2 * h_q * s_q + 2 * h_kv * s_k)  # Q and O; K and V
    return elements * DTYPE_BYTES[dtype]


def attention_times(
    spec: HardwareSpec,
    params: GpuParams,
    *,
    b: np.ndarray,
    h_q: np.ndarray,
    h_kv: np.ndarray,
    s_q: np.ndarray,
    s_k: np.ndarray,
    d: np.ndarray,
    causal: bool,
    dtype: str,
    clock_mode: str = "default",
) -> dict[str, np.ndarray]:
    """GPU fused-attention times (s), vectorized over rows; see the module doc.

    ``s_q`` may be 1 (decode) or the prompt length (prefill, bottom-right causal alignment).
    Returns ``t_s``, ``t_compute_s``, ``t_memory_s``.
    """
    b, h_q, h_kv, s_q, s_k, d = (np.asarray(x, float) for x in
                                 np.broadcast_arrays(b, h_q, h_kv, s_q, s_k, d))
    units = spec.compute.num_units
    mma, softmax = _pair_times_s(spec, params, d, dtype, clock_mode)
    prefill_mma = mma * params.matrix_efficiency / prefill_mma_efficiency(spec, params)
    t_cta = params.attention_cta_round_trips * spec.main_memory.latency_s
    overhead_s = params.attention_overhead_cycles / cycle_clock_hz(spec, clock_mode)
    nbytes = b * d * (2.0 * h_q * s_q + 2.0 * h_kv * s_k) * DTYPE_BYTES[dtype]
    decode = s_q <= 1
    q_blocks = np.ceil(s_q / _BLOCK)
    ctas = b * h_q * q_blocks  # prefill: one CTA per (sequence, query head, block of queries)
    t_prefill = _prefill_s(spec, s_q, s_k, causal, ctas, (prefill_mma, softmax, t_cta))
    # decode: one CTA per (sequence, KV head, KV split); splits fill the idle SMs
    splits = np.clip(np.ceil(units / (b * h_kv)), 1.0, np.ceil(s_k / _BLOCK))
    decode_ctas = b * h_kv * splits
    active = np.minimum(np.where(decode, decode_ctas, ctas), units)
    t_memory = stream_time_s(spec, nbytes, nbytes, operand_stream_efficiency(spec, params, active))
    decode_fill = np.ceil(decode_ctas / units) * t_cta
    t_decode_compute = decode_fill + b * h_q * s_k * (mma + softmax) / active
    t_compute = np.where(decode, t_decode_compute, t_prefill)
    t = np.where(decode, np.maximum(decode_fill + t_memory, t_decode_compute),
                 np.maximum(t_prefill, t_memory)) + overhead_s
    return {"t_s": t, "t_compute_s": t_compute, "t_memory_s": t_memory}


def prefill_mma_efficiency(spec: HardwareSpec, params: GpuParams) -> float:
    """Fraction of the matrix peak prefill's MMAs run at: the kernel's measured figure where
    the spec cites one, else the GEMM main loop's."""
    return spec.compute.attention_mma_efficiency or params.matrix_efficiency


def _prefill_s(spec: HardwareSpec, s_q: np.ndarray, s_k: np.ndarray, causal: bool,
               ctas: np.ndarray, times: tuple) -> np.ndarray:
    """Prefill compute time: waves of CTAs, each a fill and its padded pairs (module doc)."""
    mma, softmax, t_cta = times
    if spec.compute.attention_kernel in _OVERLAPPED:  # softmax under the other tile's MMAs
        t_pair = np.maximum(mma, softmax)
        t_fill = t_cta + np.minimum(s_q, _BLOCK) * np.minimum(s_k, _BLOCK) * softmax
    else:  # FlashAttention-2: the softmax sits between the two MMAs of each block
        t_pair, t_fill = mma + softmax, t_cta
    q_blocks = np.ceil(s_q / _BLOCK)
    pairs_per_cta = _padded_pairs(s_q, s_k, causal) / q_blocks
    return np.ceil(ctas / spec.compute.num_units) * (t_fill + pairs_per_cta * t_pair)


def _pair_times_s(spec: HardwareSpec, params: GpuParams, d: np.ndarray, dtype: str,
                  clock_mode: str) -> tuple[np.ndarray, float]:
    """Seconds one SM spends per (query, key) pair on the MMAs, and on the softmax: one exp2 on
    the SFUs and ``softmax_ops_per_pair`` FP32 operations on the CUDA cores."""
    c = spec.compute
    per_unit = c.matrix_peak(dtype) * tensor_rate_scale(params, clock_mode) / c.num_units
    mma = 4.0 * d / (per_unit * params.matrix_efficiency)
    softmax = params.softmax_ops_per_pair * c.num_units / c.vector_peak("fp32")
    if c.sfu_ops_per_cycle_per_unit:
        softmax += 1.0 / (c.sfu_ops_per_cycle_per_unit * cycle_clock_hz(spec, clock_mode))
    return mma, softmax


def _padded_pairs(s_q: np.ndarray, s_k: np.ndarray, causal: bool) -> np.ndarray:
    """(query, key) pairs a blocked kernel computes: whole blocks, the diagonal ones included;
    a sequence shorter than a block computes its own rows only (varlen kernels)."""
    q_blocks, k_blocks = np.ceil(s_q / _BLOCK), np.ceil(s_k / _BLOCK)
    rows = np.minimum(s_q, _BLOCK)
    cols = np.minimum(s_k, _BLOCK)
    if not causal:
        return q_blocks * k_blocks * rows * cols
    offset = k_blocks - q_blocks  # bottom-right: the last query block sees every key block
    blocks = q_blocks * offset + q_blocks * (q_blocks + 1) / 2
    return blocks * rows * cols


def attention_time(
    spec: HardwareSpec,
    attrs: Mapping[str, Any],
    dtype: str,
    *,
    params: GpuParams | None = None,
    clock_mode: str = "default",
) -> KernelTime:
    causal = bool(attrs.get("causal", False))
    if attrs.get("backward"):
        return _backward(attention_time(spec, {**attrs, "backward": False}, dtype, params=params,
                                        clock_mode=clock_mode))
    if spec.kind == "gpu" and params is not None:
        return _gpu_kernel(spec, params, attrs, dtype, causal, clock_mode)
    flops = attention_flops(attrs)
    rate = spec.compute.matrix_peak(dtype) * spec.efficiency.matrix
    kernel = kernel_time(spec, flops=flops, flops_per_s=rate,
                         bytes_moved=attention_bytes(attrs, dtype))
    kernel.detail["causal"] = causal
    return kernel


#: FlashAttention backward recomputes S = QK^T and does 5 matmuls per tile against the forward's 2
#: (Dao, "FlashAttention-2", 2023, section 3.1.2), and reads Q, K, V, O, dO and writes dQ, dK, dV.
BACKWARD_WORK = 2.5


def _backward(forward: KernelTime) -> KernelTime:
    """The backward kernel of an attention whose forward kernel is ``forward``."""
    detail = {**forward.detail, "backward": True, "backward_work": BACKWARD_WORK}
    for key in ("t_compute_s", "t_memory_s", "flops", "bytes"):
        if key in detail:
            detail[key] = detail[key] * (BACKWARD_WORK if key != "bytes" else 2.0)
    return KernelTime(t_s=forward.t_s * BACKWARD_WORK, bound=forward.bound, detail=detail)


def _gpu_kernel(spec, params, attrs, dtype, causal, clock_mode) -> KernelTime:
    shape = {key: int(attrs[key]) for key in ("b", "h_q", "s_q", "s_k", "d")}
    r = attention_times(spec, params, h_kv=int(attrs.get("h_kv", shape["h_q"])), causal=causal,
                        dtype=dtype, clock_mode=clock_mode, **shape)
    r = {key: float(v) for key, v in r.items()}
    detail = {"t_compute_s": r["t_compute_s"], "t_memory_s": r["t_memory_s"],
              "t_latency_s": params.attention_overhead_cycles / cycle_clock_hz(spec, clock_mode),
              "flops": attention_flops(attrs),
              "achievable_flops_per_s": spec.compute.matrix_peak(dtype)
              * (params.matrix_efficiency if shape["s_q"] <= 1
                 else prefill_mma_efficiency(spec, params)),
              "bytes": attention_bytes(attrs, dtype), "memory_level": spec.main_memory.name,
              "achievable_bytes_per_s": spec.memory_bandwidth(spec.main_memory)
              * operand_stream_efficiency(spec, params), "causal": causal, "clock_mode": clock_mode}
    bound = "compute" if r["t_compute_s"] >= r["t_memory_s"] else "memory"
    return KernelTime(t_s=r["t_s"], bound=bound, detail=detail)
