"""Fused attention (FlashAttention-style) time: matrix FLOPs vs. reading Q, K, V and writing O.

FlashAttention computes softmax(Q K^T / sqrt(d)) V tile by tile on chip, so its HBM traffic is
Q, K, V read once and O written once (Dao et al., "FlashAttention", NeurIPS 2022, Theorem 2, for
head dims that fit on chip), and its work is two GEMMs over the unmasked (query, key) pairs:

    flops = 4 * b * h_q * d * pairs,  pairs = s_q * s_k  (no mask)
    causal: query i (aligned to the end of the keys) sees s_k - s_q + i + 1 keys

Grouped-query attention (h_kv < h_q) reads K and V for h_kv heads only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sim.cost.roofline import KernelTime, kernel_time
from sim.hardware import HardwareSpec
from sim.units import DTYPE_BYTES

__all__ = ["attention_pairs", "attention_flops", "attention_bytes", "attention_time"]


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


def attention_time(spec: HardwareSpec, attrs: Mapping[str, Any], dtype: str) -> KernelTime:
    flops = attention_flops(attrs)
    rate = spec.compute.matrix_peak(dtype) * spec.efficiency.matrix
    kernel = kernel_time(spec, flops=flops, flops_per_s=rate,
                         bytes_moved=attention_bytes(attrs, dtype))
    kernel.detail["causal"] = bool(attrs.get("causal", False))
    return kernel
