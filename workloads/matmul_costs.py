"""Cost formulas of the matrix-engine ops: GEMMs, convolutions, attention (forward and backward).

Symbols: b batch (of matrices), m x k times k x n for a GEMM; for a convolution N batch, C_in /
C_out channels, g groups, K the filter's spatial size; for attention h_q / h_kv query / key heads,
s_q / s_k query / key lengths, d / d_v head dims of q,k / v, P the (query, key) pairs computed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from workloads.cost_base import OpCall, OpCost, generic, main_dtype, total_bytes

__all__ = ["gemm", "b_stored_nk", "convolution", "convolution_backward", "attention",
           "attention_backward", "causal_pairs", "ATTENTION_BACKWARD_MATMULS"]

#: Matmuls of attention's backward per (query, key) pair: recompute S = q k^T, then dV = P^T dO,
#: dP = dO v^T, dQ = dS k, dK = dS^T q: 3 with head dim d, 2 with d_v (Dao 2023,
#: "FlashAttention-2", Sec. 3.1.2 and 4.1: the backward is 2.5x the forward's FLOPs when d = d_v).
ATTENTION_BACKWARD_MATMULS = {"d": 3, "d_v": 2}


def gemm(a_name: str, b_name: str, *, b_is_weight: bool = False) -> Callable[[OpCall], OpCost]:
    """GEMM out = A @ B (+ bias): 2*b*m*n*k FLOP (the bias add, b*m*n, is left out)."""

    def formula(call: OpCall) -> OpCost:
        a, b = call.args[a_name], call.args[b_name]
        k = int(a.shape[-1])
        m = int(a.shape[-2]) if a.dim() > 1 else 1
        if b_is_weight:  # linear: weight is (n, k); leading dims of the input fold into m
            n, m = int(b.shape[0]), math.prod(int(d) for d in a.shape[:-1])
        else:
            n = int(b.shape[-1]) if b.dim() > 1 else 1
        out_numel = call.outputs[0].numel()
        batch = out_numel // (m * n) if m * n else 1
        attrs = {"b": batch, "m": m, "n": n, "k": k}
        if b_is_weight or b_stored_nk(b):
            attrs["b_layout"] = "nk"
        elif b.dim() > 1:
            attrs["b_layout"] = "kn"
        return generic("gemm", call, 2 * batch * m * n * k, main=a, attrs=attrs)

    return formula


def b_stored_nk(b: torch.Tensor) -> bool:
    """Whether GEMM operand B (k x n) is the transpose of a row-major n x k matrix, as
    ``F.linear`` passes its weight (``weight.t()``); else it is stored k x n (GPT-2's
    ``Conv1D``, ``x @ w``). CPU BLAS runs the two through different kernels: a matrix-vector
    product over a weight streamed from main memory took 1.1-1.65x longer as n x k in fp32,
    and 0.7-0.8x as long in bf16 (measured here 2026-11-29, docs/trace-format.md)."""
    if b.dim() < 2 or b.shape[-1] == 1 or b.shape[-2] == 1:
        return False
    return b.stride(-2) == 1 and b.stride(-1) != 1


def _conv_gemm(x_shape, w_shape, out_shape, transposed: bool) -> dict[str, int]:
    """A convolution as the implicit GEMM it is: m = N x output positions, n = C_out,
    k = C_in / g x K (for a transposed one, the input positions play the output's part).
    Same count as ``torch.utils.flop_counter.conv_flop_count``.
    """
    positions = (x_shape if transposed else out_shape)[2:]
    c_out, c_in_per_group, *kernel = (int(d) for d in w_shape)
    return {"b": 1, "m": int(x_shape[0]) * math.prod(int(d) for d in positions), "n": c_out,
            "k": c_in_per_group * math.prod(kernel)}


def convolution(call: OpCall) -> OpCost:
    """Forward convolution: 2 m n k FLOP of its implicit GEMM (bias add not counted)."""
    x, w = call.args["input"], call.args["weight"]
    shape = _conv_gemm(x.shape, w.shape, call.outputs[0].shape, bool(call.args["transposed"]))
    flops = 2 * shape["m"] * shape["n"] * shape["k"]
    return generic("gemm", call, flops, main=x, attrs={**shape, "conv": True})


def convolution_backward(call: OpCall) -> OpCost:
    """Input and weight gradients each cost the forward's FLOPs (``output_mask`` says which)."""
    x, w, dy = call.args["input"], call.args["weight"], call.args["grad_output"]
    shape = _conv_gemm(x.shape, w.shape, dy.shape, bool(call.args["transposed"]))
    mask = call.args.get("output_mask", (True, True, True))
    flops = 2 * shape["m"] * shape["n"] * shape["k"] * (int(mask[0]) + int(mask[1]))
    return generic("gemm", call, flops, main=dy, attrs={**shape, "conv": True, "backward": True})


def causal_pairs(s_q: int, s_k: int, *, align: str = "bottom_right") -> int:
    """Unmasked (query, key) pairs of a causal mask, per (batch, head).

    ``bottom_right``: the s_q queries are the last s_q positions of the s_k keys (query i sees
    keys 0 .. s_k - s_q + i), as in decoding with a KV cache and FlashAttention >= 2.1.
    ``top_left``: query i sees keys 0 .. i, which is what PyTorch's ``is_causal=True`` means.
    Both give s(s+1)/2 when s_q = s_k = s.
    """
    offset = s_k - s_q if align == "bottom_right" else 0
    return sum(min(s_k, max(0, offset + i + 1)) for i in range(s_q))


def _attention_shape(call: OpCall) -> tuple[dict, int]:
    """attrs {b, h_q, h_kv, s_q, s_k, d, causal, ...} and P, from q, k, v of shape (b, h, s, d)."""
    q, k, v = call.args["query"], call.args["key"], call.args["value"]
    b, h_q, s_q, d = (int(x) for x in q.shape)
    h_kv, s_k, d_v = int(k.shape[-3]), int(k.shape[-2]), int(v.shape[-1])
    causal = bool(call.args.get("is_causal", False))
    pairs = causal_pairs(s_q, s_k, align="top_left") if causal else s_q * s_k
    attrs = {"b": b, "h_q": h_q, "h_kv": h_kv, "s_q": s_q, "s_k": s_k, "d": d, "causal": causal}
    if d_v != d:
        attrs["d_v"] = d_v
    if causal:
        attrs["causal_align"] = "top_left"
    if call.args.get("attn_mask", call.args.get("attn_bias")) is not None:
        attrs["mask"] = True
    return attrs, pairs


def attention(call: OpCall) -> OpCost:
    """softmax(q k^T * scale [+ mask]) v: 2*d FLOP per pair for q k^T, 2*d_v for p v.

    Counts only the two matmuls, as FlashAttention papers do (Dao 2023, "FlashAttention-2",
    Sec. 4.1: 4 * s^2 * d * heads per batch, halved for a causal mask).
    """
    attrs, pairs = _attention_shape(call)
    d, d_v = attrs["d"], attrs.get("d_v", attrs["d"])
    flops = 2 * attrs["b"] * attrs["h_q"] * pairs * (d + d_v)
    written = [t for t in call.outputs if t.dim() > 0]  # output, logsumexp; not rng scalars
    return OpCost("attention", main_dtype(call, call.args["query"]), flops=float(flops),
                  bytes_read=total_bytes(call.inputs), bytes_written=total_bytes(written),
                  attrs=attrs)


def attention_backward(call: OpCall) -> OpCost:
    """Gradients of q, k, v: five matmuls per pair (:data:`ATTENTION_BACKWARD_MATMULS`).

    Reads dO, q, k, v, O, logsumexp (+ mask); writes dq, dk, dv. attrs as the forward's plus
    ``backward: true``.
    """
    attrs, pairs = _attention_shape(call)
    d, d_v = attrs["d"], attrs.get("d_v", attrs["d"])
    per_pair = 2 * (ATTENTION_BACKWARD_MATMULS["d"] * d + ATTENTION_BACKWARD_MATMULS["d_v"] * d_v)
    flops = attrs["b"] * attrs["h_q"] * pairs * per_pair
    written = [t for t in call.outputs if t.dim() > 0]
    return OpCost("attention", main_dtype(call, call.args["query"]), flops=float(flops),
                  bytes_read=total_bytes(call.inputs), bytes_written=total_bytes(written),
                  attrs={**attrs, "backward": True})
