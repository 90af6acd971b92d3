"""Device-neutral cost of one aten call: category, FLOPs, bytes read and written, ``attrs``.

:func:`op_cost` looks the op's name up in a table of formulas (``workloads.matmul_costs``,
``workloads.vector_costs``), else falls back on its torch tags (``pointwise`` -> elementwise,
``reduction`` -> reduction), else charges it as ``other`` (all inputs read, outputs written,
0 FLOP). A copy or elementwise op that reads a non-dense input (a transpose, a strided slice) gets
``attrs["contiguous"] = False``: on a device its kernel reads strided memory. The formulas and their
constants are listed in ``docs/trace-format.md``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from workloads import matmul_costs as mat
from workloads import vector_costs as vec
from workloads.cost_base import OpCall, OpCost, generic, main_dtype
from workloads.matmul_costs import causal_pairs
from workloads.tensors import is_dense, touched_numel
from workloads.vector_costs import SPECIAL_FLOPS_PER_ELEMENT

__all__ = ["OpCall", "OpCost", "op_cost", "causal_pairs", "SPECIAL_FLOPS_PER_ELEMENT"]

_LAYOUT_SENSITIVE = frozenset({"copy", "elementwise"})


def op_cost(call: OpCall) -> OpCost:
    """The cost of ``call``: a formula for known ops, else a category from the op's tags."""
    if call.is_view:
        return OpCost("view", main_dtype(call))
    formula = _FORMULAS.get(call.name)
    if formula is not None:
        cost = formula(call)
    elif torch.Tag.pointwise in call.tags:
        cost = vec.elementwise(call)
    elif torch.Tag.reduction in call.tags:
        cost = vec.reduction(call)
    else:
        cost = generic("other", call)
    return _with_layout(cost, call)


def _with_layout(cost: OpCost, call: OpCall) -> OpCost:
    if cost.category not in _LAYOUT_SENSITIVE:
        return cost
    if all(is_dense(t) or touched_numel(t) <= 1 for t in call.inputs):
        return cost
    return OpCost(cost.category, cost.dtype, flops=cost.flops, bytes_read=cost.bytes_read,
                  bytes_written=cost.bytes_written, sync=cost.sync,
                  attrs={**cost.attrs, "contiguous": False})


_VIEW_NAMES = (
    "view", "_unsafe_view", "reshape", "transpose", "permute", "expand", "slice", "select",
    "squeeze", "unsqueeze", "t", "as_strided", "detach", "alias", "lift_fresh", "split", "chunk",
    "unbind", "narrow", "view_as", "unflatten", "flatten", "diagonal", "movedim",
)
_COPY_NAMES = ("clone", "_to_copy", "contiguous", "cat", "stack", "repeat", "constant_pad_nd",
               "flip", "roll", "_reshape_copy", "scatter", "scatter_", "scatter_add",
               "scatter_add_", "slice_backward", "select_backward", "as_strided_scatter")
_ATTENTION_NAMES = (
    "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
    "scaled_dot_product_attention",
)


def _formulas() -> dict[str, Callable[[OpCall], OpCost]]:
    table: dict[str, Callable[[OpCall], OpCost]] = {
        "mm": mat.gemm("self", "mat2"),
        "bmm": mat.gemm("self", "mat2"),
        "addmm": mat.gemm("mat1", "mat2"),
        "_addmm_activation": mat.gemm("mat1", "mat2"),
        "baddbmm": mat.gemm("batch1", "batch2"),
        "matmul": mat.gemm("self", "other"),
        "linear": mat.gemm("input", "weight", b_is_weight=True),
        "convolution": mat.convolution,
        "convolution_backward": mat.convolution_backward,
        "native_layer_norm": vec.layer_norm,
        "native_layer_norm_backward": vec.layer_norm_backward,
        "rms_norm": vec.rms_norm,
        "_fused_rms_norm": vec.rms_norm,
        "embedding": vec.embedding,
        "embedding_dense_backward": vec.embedding_backward,
        "index_select": vec.gather("self"),
        "gather": vec.gather("self"),
        "index": vec.gather("self"),
        "index_put": vec.scatter("values"),
        "index_put_": vec.scatter("values"),
        "index_copy": vec.scatter("source"),
        "index_copy_": vec.scatter("source"),
        "index_add": vec.index_add,
        "index_add_": vec.index_add,
        "nll_loss_forward": vec.nll_loss,
        "nll_loss_backward": vec.nll_loss_backward,
        "copy_": vec.copy_into,
        "_local_scalar_dense": vec.scalar_read,
    }
    for name in ("masked_fill", "masked_fill_", "where", "arange", "triu", "tril",
                 "native_dropout", "floor_divide", "remainder", "bernoulli", "bernoulli_",
                 "uniform_", "normal_", "random_", *vec.NO_FLOP_WRITES):
        table[name] = vec.elementwise
    for name in _ATTENTION_NAMES:
        table[name] = mat.attention
        table[f"{name}_backward"] = mat.attention_backward
    for name in (*vec.REDUCTION_FLOPS_PER_ELEMENT, "sum", "mean", "amax", "amin", "max", "min",
                 "argmax", "argmin", "any", "all", "prod", "cumsum", "topk", "sort"):
        table[name] = vec.reduction
    for name in ("empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided"):
        table[name] = vec.allocation
    for name in _COPY_NAMES:
        table[name] = vec.copy
    for name in _VIEW_NAMES:  # reached only when the call did not alias (e.g. reshape copied)
        table.setdefault(name, vec.copy)
    return {f"aten::{name}": formula for name, formula in table.items()}


_FORMULAS = _formulas()
