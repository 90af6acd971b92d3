"""What a cost formula sees (:class:`OpCall`) and returns (:class:`OpCost`), and shared helpers.

What is modeled: the work an op must do on any device, not how long it took. FLOPs count the
arithmetic of the op's definition (a multiply-add is 2 FLOP); bytes count each distinct element of
each tensor the op reads or writes once (a broadcast input counts its own size, a gather counts the
rows it gathers), i.e. the traffic of an ideal kernel with no re-reads. The formulas live in
``workloads.matmul_costs`` (GEMM, convolution, attention) and ``workloads.vector_costs``
(elementwise, reductions, norms, embedding, copies); ``workloads.op_costs`` maps aten names to them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from workloads.tensors import dtype_name, touched_bytes, touched_numel

__all__ = ["OpCall", "OpCost", "base_name", "total_bytes", "main_dtype", "generic", "out_numel"]


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


def base_name(name: str) -> str:
    """``aten::add_`` -> ``add_``."""
    return name.removeprefix("aten::")


def total_bytes(tensors: Sequence[torch.Tensor]) -> float:
    return float(sum(touched_bytes(t) for t in tensors))


def main_dtype(call: OpCall, main: torch.Tensor | None = None) -> str:
    """dtype of the main compute input: ``main``, else the first floating input, else any tensor."""
    if main is None:
        floats = [t for t in call.inputs if t.is_floating_point()]
        candidates = floats or list(call.inputs) or list(call.outputs)
        main = candidates[0] if candidates else None
    return dtype_name(main.dtype) if main is not None else "fp32"


def generic(category: str, call: OpCall, flops: float = 0.0, *,
            main: torch.Tensor | None = None, **extra: Any) -> OpCost:
    """Read every input, write every output; ``main`` is the compute input that names the dtype."""
    return OpCost(category, main_dtype(call, main), flops=float(flops),
                  bytes_read=total_bytes(call.inputs), bytes_written=total_bytes(call.outputs),
                  **extra)


def out_numel(call: OpCall) -> int:
    return touched_numel(call.outputs[0]) if call.outputs else 0
