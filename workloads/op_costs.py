"""Device-neutral cost of one aten call: category, FLOPs, bytes read and written, ``attrs``.

What is modeled: the work an op must do on any device, not how long it took. FLOPs count the
arithmetic of the op's definition (a multiply-add is 2 FLOP); bytes count each distinct element of
each tensor the op reads or writes once (a broadcast input counts its own size, a gather counts the
rows it gathers), i.e. the traffic of an ideal kernel with no re-reads. The formulas and their
constants are listed in ``docs/trace-format.md``.

Symbols: b batch (of matrices), m x k times k x n for a GEMM; for attention h_q / h_kv query / key
heads, s_q / s_k query / key lengths, d / d_v head dims of q,k / v.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from workloads.tensors import dtype_name, touched_bytes, touched_numel

__all__ = ["OpCall", "OpCost", "op_cost", "causal_pairs", "SPECIAL_FLOPS_PER_ELEMENT"]

#: FLOPs charged per element for a special function (exp, log, tanh, sigmoid, erf, sin, cos,
#: sqrt, rsqrt, and the activations built on them: gelu, silu). A convention for the cost of a
#: range-reduction + polynomial evaluation, not a measurement; arithmetic ops count 1.
SPECIAL_FLOPS_PER_ELEMENT = 8


@dataclass(frozen=True, slots=True)
class OpCall:
    """One aten call as the cost formulas see it.

    ``args`` are the call's arguments bound to their schema names; ``inputs`` every tensor argument
    in schema order (list arguments flattened); ``outputs`` every returned tensor; ``is_view`` says
    the outputs alias an input's storage and nothing is written.
    """

    name: str
    args: Mapping[str, Any]
    inputs: Sequence[torch.Tensor]
    outputs: Sequence[torch.Tensor]
    is_view: bool = False
    tags: frozenset = frozenset()


@dataclass(frozen=True, slots=True)
class OpCost:
    """Category (one of ``sim.trace.CATEGORIES``), FLOP, bytes, attrs and the compute dtype."""

    category: str
    dtype: str
    flops: float = 0.0
    bytes_read: float = 0.0
    bytes_written: float = 0.0
    sync: bool = False
    attrs: Mapping[str, Any] = field(default_factory=dict)


def op_cost(call: OpCall) -> OpCost:
    """The cost of ``call``: a formula for known ops, else a category from the op's tags."""
    if call.is_view:
        return OpCost("view", _main_dtype(call))
    formula = _FORMULAS.get(call.name)
    if formula is not None:
        return formula(call)
    if torch.Tag.pointwise in call.tags:
        return _elementwise(call)
    if torch.Tag.reduction in call.tags:
        return _reduction(call)
    return _generic("other", call)


# --- helpers -----------------------------------------------------------------------------------

def _bytes(tensors: Sequence[torch.Tensor]) -> float:
    return float(sum(touched_bytes(t) for t in tensors))


def _main_dtype(call: OpCall, main: torch.Tensor | None = None) -> str:
    """dtype of the main compute input: ``main``, else the first floating input, else any tensor."""
    if main is None:
        floats = [t for t in call.inputs if t.is_floating_point()]
        candidates = floats or list(call.inputs) or list(call.outputs)
        main = candidates[0] if candidates else None
    return dtype_name(main.dtype) if main is not None else "fp32"


def _generic(category: str, call: OpCall, flops: float = 0.0, *,
             main: torch.Tensor | None = None, **extra: Any) -> OpCost:
    """Read every input, write every output; ``main`` is the compute input that names the dtype."""
    return OpCost(category, _main_dtype(call, main), flops=float(flops),
                  bytes_read=_bytes(call.inputs), bytes_written=_bytes(call.outputs), **extra)


def _out_numel(call: OpCall) -> int:
    return touched_numel(call.outputs[0]) if call.outputs else 0


# --- gemm ----------------------------------------------------------------------------------------

def _gemm(a_name: str, b_name: str, *, b_is_weight: bool = False) -> Callable[[OpCall], OpCost]:
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
        return _generic("gemm", call, 2 * batch * m * n * k, main=a, attrs=attrs)

    return formula


# --- attention -----------------------------------------------------------------------------------

def causal_pairs(s_q: int, s_k: int, *, align: str = "bottom_right") -> int:
    """Unmasked (query, key) pairs of a causal mask, per (batch, head).

    ``bottom_right``: the s_q queries are the last s_q positions of the s_k keys (query i sees
    keys 0 .. s_k - s_q + i), as in decoding with a KV cache and FlashAttention >= 2.1.
    ``top_left``: query i sees keys 0 .. i, which is what PyTorch's ``is_causal=True`` means.
    Both give s(s+1)/2 when s_q = s_k = s.
    """
    offset = s_k - s_q if align == "bottom_right" else 0
    return sum(min(s_k, max(0, offset + i + 1)) for i in range(s_q))


def _attention(call: OpCall) -> OpCost:
    """softmax(q k^T * scale [+ mask]) v: 2*d FLOP per pair for q k^T, 2*d_v for p v.

    Counts only the two matmuls, as FlashAttention papers do (Dao 2023, "FlashAttention-2",
    Sec. 4.1: 4 * s^2 * d * heads per batch, halved for a causal mask). q, k, v are (b, h, s, d).
    """
    q, k, v = call.args["query"], call.args["key"], call.args["value"]
    b, h_q, s_q, d = (int(x) for x in q.shape)
    h_kv, s_k, d_v = int(k.shape[-3]), int(k.shape[-2]), int(v.shape[-1])
    causal = bool(call.args.get("is_causal", False))
    mask = call.args.get("attn_mask", call.args.get("attn_bias"))
    pairs = causal_pairs(s_q, s_k, align="top_left") if causal else s_q * s_k
    attrs = {"b": b, "h_q": h_q, "h_kv": h_kv, "s_q": s_q, "s_k": s_k, "d": d, "causal": causal}
    if d_v != d:
        attrs["d_v"] = d_v
    if causal:
        attrs["causal_align"] = "top_left"
    if mask is not None:
        attrs["mask"] = True
    flops = 2 * b * h_q * pairs * (d + d_v)
    written = [t for t in call.outputs if t.dim() > 0]  # output, logsumexp; not rng scalars
    return OpCost("attention", _main_dtype(call, q), flops=float(flops),
                  bytes_read=_bytes(call.inputs), bytes_written=_bytes(written), attrs=attrs)


# --- elementwise, reduction, norm ----------------------------------------------------------------

_SPECIAL_FUNCTIONS = frozenset({
    "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "tanh", "sigmoid", "erf", "erfc",
    "erfinv", "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "sqrt", "rsqrt", "gelu",
    "silu", "mish", "softplus", "elu", "selu", "logit", "atan2",
})
_NO_FLOP_WRITES = frozenset({
    "fill", "fill_", "zero_", "zeros", "ones", "full", "zeros_like", "ones_like", "full_like",
    "new_zeros", "new_ones", "new_full", "scalar_tensor",
})


def _base(name: str) -> str:
    return name.removeprefix("aten::")


def _elementwise(call: OpCall) -> OpCost:
    """FLOPs = output elements * per-element constant (1 arithmetic, 8 special, 0 fill)."""
    base = _base(call.name)
    if base in _NO_FLOP_WRITES:
        per_element = 0
    elif base.rstrip("_") in _SPECIAL_FUNCTIONS:
        per_element = SPECIAL_FLOPS_PER_ELEMENT
    elif base.startswith("pow"):
        per_element = _pow_flops(call.args.get("exponent"))
    else:
        per_element = 1
    return _generic("elementwise", call, per_element * _out_numel(call))


def _pow_flops(exponent: object) -> int:
    """x**2 is one multiply and x**3 two; any other power is exp(y log x), a special function."""
    if isinstance(exponent, int | float) and exponent in (2, 3):
        return int(exponent) - 1
    return SPECIAL_FLOPS_PER_ELEMENT


#: FLOPs per input element of a reduction. softmax and log_softmax: max 1 + subtract 1 + exp 8
#: + sum 1 + normalize 1 = 12; var/std: subtract the mean, square, accumulate = 3.
_REDUCTION_FLOPS_PER_ELEMENT = {
    "_softmax": 12, "softmax": 12, "_log_softmax": 12, "log_softmax": 12, "logsumexp": 11,
    "var": 3, "var_mean": 3, "std": 3, "std_mean": 3, "linalg_vector_norm": 2, "norm": 2,
}


def _reduction(call: OpCall) -> OpCost:
    """FLOPs = input elements * per-element constant (1 for sum, mean, max, ...)."""
    if torch.Tag.pointwise in call.tags:  # binary overloads such as max.other
        return _elementwise(call)
    per_element = _REDUCTION_FLOPS_PER_ELEMENT.get(_base(call.name), 1)
    source = call.inputs[0] if call.inputs else None
    numel = touched_numel(source) if source is not None else 0
    return _generic("reduction", call, per_element * numel)


def _layer_norm(call: OpCall) -> OpCost:
    """Per element: mean 1, variance 3, normalize 2, + 1 per affine weight and bias present."""
    per_element = 6 + (call.args.get("weight") is not None) + (call.args.get("bias") is not None)
    return _generic("norm", call, per_element * touched_numel(call.args["input"]))


def _rms_norm(call: OpCall) -> OpCost:
    """Per element: square and accumulate 2, scale 1, + 1 for the weight if present."""
    per_element = 3 + (call.args.get("weight") is not None)
    return _generic("norm", call, per_element * touched_numel(call.args["input"]))


# --- embedding, copy ----------------------------------------------------------------------------

def _embedding(call: OpCall) -> OpCost:
    """A row gather: reads the gathered rows and the indices, writes the output."""
    weight, indices = call.args["weight"], call.args["indices"]
    out = call.outputs[0]
    attrs = {"num_indices": indices.numel(), "vocab": int(weight.shape[0]),
             "d": int(weight.shape[-1])}
    return OpCost("embedding", _main_dtype(call, weight),
                  bytes_read=touched_bytes(out) + touched_bytes(indices),
                  bytes_written=touched_bytes(out), attrs=attrs)


def _gather(source_name: str) -> Callable[[OpCall], OpCost]:
    """index_select / gather / index: read as many source elements as are written, + indices."""

    def formula(call: OpCall) -> OpCost:
        source = call.args[source_name]
        indices = [t for t in call.inputs if t is not source]
        written = _bytes(call.outputs)
        return OpCost("copy", _main_dtype(call, source), bytes_read=written + _bytes(indices),
                      bytes_written=written)

    return formula


def _scatter(values_name: str) -> Callable[[OpCall], OpCost]:
    """index_put / index_copy: read the values and indices, write as many elements as values."""

    def formula(call: OpCall) -> OpCost:
        values = call.args[values_name]
        self_ = call.args["self"]
        others = [t for t in call.inputs if t is not self_]
        return OpCost("copy", _main_dtype(call, values), bytes_read=_bytes(others),
                      bytes_written=touched_bytes(values))

    return formula


def _copy(call: OpCall) -> OpCost:
    return _generic("copy", call)


def _copy_into(call: OpCall) -> OpCost:
    """copy_(self, src): read src, write self."""
    src, dst = call.args["src"], call.args["self"]
    return OpCost("copy", _main_dtype(call, src), bytes_read=touched_bytes(src),
                  bytes_written=touched_bytes(dst))


def _allocation(call: OpCall) -> OpCost:
    """empty*: allocates, touches no bytes."""
    return OpCost("other", _main_dtype(call))


def _scalar_read(call: OpCall) -> OpCost:
    """.item(): the host waits for the value (a synchronization)."""
    return _generic("other", call, sync=True)


_VIEW_NAMES = (
    "view", "_unsafe_view", "reshape", "transpose", "permute", "expand", "slice", "select",
    "squeeze", "unsqueeze", "t", "as_strided", "detach", "alias", "lift_fresh", "split", "chunk",
    "unbind", "narrow", "view_as", "unflatten", "flatten", "diagonal", "movedim",
)
_COPY_NAMES = ("clone", "_to_copy", "contiguous", "cat", "stack", "repeat", "constant_pad_nd",
               "flip", "roll", "_reshape_copy")


def _formulas() -> dict[str, Callable[[OpCall], OpCost]]:
    table: dict[str, Callable[[OpCall], OpCost]] = {
        "mm": _gemm("self", "mat2"),
        "bmm": _gemm("self", "mat2"),
        "addmm": _gemm("mat1", "mat2"),
        "_addmm_activation": _gemm("mat1", "mat2"),
        "baddbmm": _gemm("batch1", "batch2"),
        "matmul": _gemm("self", "other"),
        "linear": _gemm("input", "weight", b_is_weight=True),
        "native_layer_norm": _layer_norm,
        "rms_norm": _rms_norm,
        "_fused_rms_norm": _rms_norm,
        "embedding": _embedding,
        "index_select": _gather("self"),
        "gather": _gather("self"),
        "index": _gather("self"),
        "index_put": _scatter("values"),
        "index_put_": _scatter("values"),
        "index_copy": _scatter("source"),
        "index_copy_": _scatter("source"),
        "copy_": _copy_into,
        "_local_scalar_dense": _scalar_read,
        "masked_fill": _elementwise,
        "masked_fill_": _elementwise,
        "where": _elementwise,
        "arange": _elementwise,
        "triu": _elementwise,
        "tril": _elementwise,
        "native_dropout": _elementwise,
    }
    for attention in ("_scaled_dot_product_flash_attention_for_cpu",
                      "_scaled_dot_product_flash_attention",
                      "_scaled_dot_product_efficient_attention",
                      "_scaled_dot_product_cudnn_attention", "scaled_dot_product_attention"):
        table[attention] = _attention
    for name in _REDUCTION_FLOPS_PER_ELEMENT:
        table[name] = _reduction
    for name in ("sum", "mean", "amax", "amin", "max", "min", "argmax", "argmin", "any", "all",
                 "prod", "cumsum"):
        table[name] = _reduction
    for name in _NO_FLOP_WRITES:
        table[name] = _elementwise
    for name in ("empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided"):
        table[name] = _allocation
    for name in _COPY_NAMES:
        table[name] = _copy
    for name in _VIEW_NAMES:  # reached only when the call did not alias (e.g. reshape copied)
        table.setdefault(name, _copy)
    return {f"aten::{name}": formula for name, formula in table.items()}


_FORMULAS = _formulas()
