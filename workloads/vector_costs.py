"""Cost formulas of the vector-unit and memory ops: elementwise, reductions, norms, embedding,
copies, and their backward ops.

FLOPs per element are conventions, listed here and in ``docs/trace-format.md``: an arithmetic
operation is 1 FLOP, a special function (range reduction + polynomial) is
:data:`SPECIAL_FLOPS_PER_ELEMENT`; they are not measurements.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from workloads.cost_base import (
    OpCall,
    OpCost,
    base_name,
    generic,
    main_dtype,
    out_numel,
    total_bytes,
)
from workloads.tensors import touched_bytes, touched_numel

__all__ = ["SPECIAL_FLOPS_PER_ELEMENT", "REDUCTION_FLOPS_PER_ELEMENT", "NO_FLOP_WRITES",
           "elementwise", "reduction", "layer_norm", "layer_norm_backward", "rms_norm",
           "embedding", "embedding_backward", "gather", "scatter", "index_add", "copy",
           "copy_into", "allocation", "scalar_read", "nll_loss", "nll_loss_backward"]

#: FLOPs charged per element for a special function (exp, log, tanh, sigmoid, erf, sin, cos,
#: sqrt, rsqrt, and the activations built on them and their gradients: gelu, silu). A convention
#: for the cost of a range-reduction + polynomial evaluation, not a measurement.
SPECIAL_FLOPS_PER_ELEMENT = 8

_SPECIAL_FUNCTIONS = frozenset({
    "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "tanh", "sigmoid", "erf", "erfc",
    "erfinv", "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "sqrt", "rsqrt", "gelu",
    "silu", "mish", "softplus", "elu", "selu", "logit", "atan2", "gelu_backward", "silu_backward",
    "mish_backward", "softplus_backward", "elu_backward",
})
#: Arithmetic ops that do more than one operation per element: addcmul x + v*a*b, addcdiv
#: x + v*a/b, lerp a + w*(b - a) (AdamW's moment updates); tanh' = dy*(1 - y^2);
#: sigmoid' = dy*y*(1 - y).
_ARITHMETIC_FLOPS_PER_ELEMENT = {"addcmul": 3, "addcdiv": 3, "lerp": 3, "tanh_backward": 3,
                                 "sigmoid_backward": 3}
NO_FLOP_WRITES = frozenset({
    "fill", "fill_", "zero_", "zeros", "ones", "full", "zeros_like", "ones_like", "full_like",
    "new_zeros", "new_ones", "new_full", "scalar_tensor",
})
#: FLOPs per input element of a reduction. softmax and log_softmax: max 1 + subtract 1 + exp 8
#: + sum 1 + normalize 1 = 12; var/std: subtract the mean, square, accumulate = 3. Backward:
#: softmax dx = y (dy - sum(dy y)) = 4; log_softmax dx = dy - exp(y) sum(dy) = 11.
REDUCTION_FLOPS_PER_ELEMENT = {
    "_softmax": 12, "softmax": 12, "_safe_softmax": 12, "_log_softmax": 12, "log_softmax": 12,
    "logsumexp": 11,
    "var": 3, "var_mean": 3, "std": 3, "std_mean": 3, "linalg_vector_norm": 2, "norm": 2,
    "_softmax_backward_data": 4, "_log_softmax_backward_data": 11,
}


def elementwise(call: OpCall) -> OpCost:
    """FLOPs = output elements * per-element constant (1 arithmetic, 8 special, 0 fill)."""
    base = base_name(call.name)
    plain = base.rstrip("_")
    if base in NO_FLOP_WRITES:
        per_element = 0
    elif plain in _SPECIAL_FUNCTIONS:
        per_element = SPECIAL_FLOPS_PER_ELEMENT
    elif base.startswith("pow"):
        per_element = _pow_flops(call.args.get("exponent"))
    else:
        per_element = _ARITHMETIC_FLOPS_PER_ELEMENT.get(plain, 1)
    return generic("elementwise", call, per_element * out_numel(call))


def _pow_flops(exponent: object) -> int:
    """x**2 is one multiply and x**3 two; any other power is exp(y log x), a special function."""
    if isinstance(exponent, int | float) and exponent in (2, 3):
        return int(exponent) - 1
    return SPECIAL_FLOPS_PER_ELEMENT


def reduction(call: OpCall) -> OpCost:
    """FLOPs = input elements * per-element constant (1 for sum, mean, max, ...)."""
    if torch.Tag.pointwise in call.tags:  # binary overloads such as max.other
        return elementwise(call)
    per_element = REDUCTION_FLOPS_PER_ELEMENT.get(base_name(call.name), 1)
    source = call.inputs[0] if call.inputs else None
    numel = touched_numel(source) if source is not None else 0
    return generic("reduction", call, per_element * numel)


def layer_norm(call: OpCall) -> OpCost:
    """Per element: mean 1, variance 3, normalize 2, + 1 per affine weight and bias present."""
    per_element = 6 + (call.args.get("weight") is not None) + (call.args.get("bias") is not None)
    return generic("norm", call, per_element * touched_numel(call.args["input"]))


def layer_norm_backward(call: OpCall) -> OpCost:
    """Per element: input gradient 9 (dy w, two row sums of dy w and dy w x^, the combination),
    weight gradient 2 (dy x^, accumulate), bias gradient 1, as ``output_mask`` asks."""
    mask = call.args.get("output_mask", (True, True, True))
    per_element = 9 * bool(mask[0]) + 2 * bool(mask[1]) + bool(mask[2])
    return generic("norm", call, per_element * touched_numel(call.args["input"]))


def rms_norm(call: OpCall) -> OpCost:
    """Per element: square and accumulate 2, scale 1, + 1 for the weight if present."""
    per_element = 3 + (call.args.get("weight") is not None)
    return generic("norm", call, per_element * touched_numel(call.args["input"]))


def embedding(call: OpCall) -> OpCost:
    """A row gather: reads the gathered rows and the indices, writes the output."""
    weight, indices = call.args["weight"], call.args["indices"]
    out = call.outputs[0]
    attrs = {"num_indices": indices.numel(), "vocab": int(weight.shape[0]),
             "d": int(weight.shape[-1])}
    return OpCost("embedding", main_dtype(call, weight),
                  bytes_read=touched_bytes(out) + touched_bytes(indices),
                  bytes_written=touched_bytes(out), attrs=attrs)


def embedding_backward(call: OpCall) -> OpCost:
    """A row scatter-add into a zeroed (V, d) gradient: one add per gathered element; reads the
    output gradient and the indices, writes the whole weight gradient."""
    grad, indices = call.args["grad_output"], call.args["indices"]
    out = call.outputs[0]
    attrs = {"num_indices": indices.numel(), "vocab": int(out.shape[0]), "d": int(out.shape[-1]),
             "backward": True}
    return OpCost("embedding", main_dtype(call, grad), flops=float(touched_numel(grad)),
                  bytes_read=touched_bytes(grad) + touched_bytes(indices),
                  bytes_written=touched_bytes(out), attrs=attrs)


def gather(source_name: str) -> Callable[[OpCall], OpCost]:
    """index_select / gather / index: read as many source elements as are written, + indices."""

    def formula(call: OpCall) -> OpCost:
        source = call.args[source_name]
        indices = [t for t in call.inputs if t is not source]
        written = total_bytes(call.outputs)
        return OpCost("copy", main_dtype(call, source),
                      bytes_read=written + total_bytes(indices), bytes_written=written)

    return formula


def scatter(values_name: str) -> Callable[[OpCall], OpCost]:
    """index_put / index_copy: read the values and indices, write as many elements as values."""

    def formula(call: OpCall) -> OpCost:
        values = call.args[values_name]
        self_ = call.args["self"]
        others = [t for t in call.inputs if t is not self_]
        return OpCost("copy", main_dtype(call, values), bytes_read=total_bytes(others),
                      bytes_written=touched_bytes(values))

    return formula


def index_add(call: OpCall) -> OpCost:
    """self[index] += source (an MoE combine): one add per source element; reads the source,
    the indices and the rows of self it adds to, writes those rows."""
    source, index = call.args["source"], call.args["index"]
    rows = touched_bytes(source)
    return OpCost("copy", main_dtype(call, source), flops=float(touched_numel(source)),
                  bytes_read=2 * rows + touched_bytes(index), bytes_written=rows)


def nll_loss(call: OpCall) -> OpCost:
    """Negative log-likelihood: gathers one log-probability per target and averages them."""
    target = call.args["target"]
    targets = touched_numel(target)
    itemsize = touched_bytes(call.args["self"]) / max(1, touched_numel(call.args["self"]))
    return OpCost("reduction", main_dtype(call, call.args["self"]), flops=float(targets),
                  bytes_read=touched_bytes(target) + targets * itemsize,
                  bytes_written=total_bytes(call.outputs))


def nll_loss_backward(call: OpCall) -> OpCost:
    """Writes the whole (tokens, V) gradient: zeros and one value per target."""
    reads = [call.args["grad_output"], call.args["target"]]
    return OpCost("elementwise", main_dtype(call, call.args["self"]),
                  flops=float(touched_numel(call.args["target"])),
                  bytes_read=total_bytes(reads), bytes_written=total_bytes(call.outputs))


def copy(call: OpCall) -> OpCost:
    return generic("copy", call)


def copy_into(call: OpCall) -> OpCost:
    """copy_(self, src): read src, write self."""
    src, dst = call.args["src"], call.args["self"]
    return OpCost("copy", main_dtype(call, src), bytes_read=touched_bytes(src),
                  bytes_written=touched_bytes(dst))


def allocation(call: OpCall) -> OpCost:
    """empty*: allocates, touches no bytes."""
    return OpCost("other", main_dtype(call))


def scalar_read(call: OpCall) -> OpCost:
    """.item(): the host waits for the value (a synchronization)."""
    return generic("other", call, sync=True)
