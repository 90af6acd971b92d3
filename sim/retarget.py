"""Retargeting a trace to the kernels another device would run for the same work.

A trace carries the kernel choices of the framework and machine it was captured on. Most ops mean
the same work on any device (a GEMM is a GEMM; CPU flash attention carries FlashAttention's
attrs), but the optimizer
does not: on a CPU, PyTorch's AdamW runs a sequence of small ops per parameter, while on a GPU its
default ``foreach`` implementation applies each step of that sequence to a list of parameters at
once, in a few multi-tensor kernels (``torch.optim.AdamW(foreach=None)`` picks foreach on CUDA:
PyTorch docs, torch.optim, "Algorithms" / foreach and fused implementations).

:func:`foreach_optimizer` rewrites the optimizer ops of a trace that way: the k-th op of every
parameter's sequence becomes one op over all parameters, with the summed FLOPs and bytes and one
kernel per ``MAX_TENSORS_PER_LAUNCH`` tensors (multi_tensor_apply launches a kernel per batch of
tensor lists; ATen ``MultiTensorApply.cuh``, ``depth_to_max_tensors`` = 36 for 4 lists: param,
grad, exp_avg, exp_avg_sq).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

from sim.cost.opcost import OpCost
from sim.errors import InputError
from sim.trace import Op, Trace, check_graph

__all__ = ["foreach_optimizer", "paged_kv_cache", "cuda_graph_costs", "MAX_TENSORS_PER_LAUNCH"]

MAX_TENSORS_PER_LAUNCH = 36


def foreach_optimizer(trace: Trace) -> Trace:
    """The trace with per-parameter optimizer ops grouped into foreach ops (see module doc).

    Ops are grouped when their ``attrs`` name an ``optimizer`` and a ``param``; the k-th op of each
    parameter's sequence (same op name) joins group k. A trace without such ops is returned as is.
    """
    steps = _optimizer_steps(trace.ops)
    if not steps:
        return trace
    members = {op.id for group in steps.values() for op in group}
    fused = _fused_ops(steps, members, first_id=max(op.id for op in trace.ops) + 1)
    last = max(i for i, op in enumerate(trace.ops) if op.id in members)
    before, moved = _split_before(trace.ops[:last], members)
    after = _redirect_deps([*moved, *trace.ops[last + 1:]], members, fused[-1].id)
    ops = (*before, *fused, *after)
    try:
        check_graph(ops)
    except InputError:  # an op the optimizer reads was computed from its own updates: keep as is
        return trace
    return Trace(ops=ops, meta={**trace.meta, "retargeted": "foreach optimizer"})


def _split_before(ops, members: set[int]) -> tuple[list[Op], list[Op]]:
    """Non-optimizer ops before the last optimizer op: those that do not depend (transitively)
    on an optimizer op stay before the fused block; the others move after it, in order."""
    tainted, before, moved = set(members), [], []
    for op in ops:
        if op.id in members:
            continue
        if any(d in tainted for d in op.deps):
            tainted.add(op.id)
            moved.append(op)
        else:
            before.append(op)
    return before, moved


def _optimizer_steps(ops: tuple[Op, ...]) -> dict[tuple[int, str], list[Op]]:
    """(step index within a parameter's sequence, op name) -> the ops of that step."""
    seen: dict[str, int] = defaultdict(int)
    steps: dict[tuple[int, str], list[Op]] = defaultdict(list)
    for op in ops:
        param = op.attrs.get("param") if op.attrs.get("optimizer") else None
        if param is None:
            continue
        steps[(seen[param], op.name)].append(op)
        seen[param] += 1
    return dict(sorted(steps.items()))


def _fused_ops(steps, members: set[int], first_id: int) -> list[Op]:
    fused: list[Op] = []
    for k, ((_, name), group) in enumerate(steps.items()):
        external = {d for op in group for d in op.deps if d not in members}
        deps = sorted(external | ({fused[-1].id} if fused else set()))
        first = group[0]
        fused.append(Op(
            id=first_id + k, name=name.replace("aten::", "aten::_foreach_"),
            category=first.category, dtype=first.dtype, phase=first.phase,
            flops=sum(op.flops for op in group),
            bytes_read=sum(op.bytes_read for op in group),
            bytes_written=sum(op.bytes_written for op in group),
            deps=tuple(deps), stream=first.stream, rank=first.rank, module="optimizer",
            num_kernels=math.ceil(len(group) / MAX_TENSORS_PER_LAUNCH),
            attrs={"optimizer": first.attrs["optimizer"], "num_tensors": len(group),
                   "foreach": True},
        ))
    return fused


def _redirect_deps(ops: list[Op], members: set[int], last_fused: int) -> list[Op]:
    """Ops that depended on an optimizer op now depend on the last fused op instead."""
    out = []
    for op in ops:
        if any(d in members for d in op.deps):
            deps = sorted({d for d in op.deps if d not in members} | {last_fused})
            op = replace(op, deps=tuple(deps))
        out.append(op)
    return out


def paged_kv_cache(trace: Trace) -> Trace:
    """The trace as a serving engine with a paged KV cache would run its decode steps.

    HF transformers' ``DynamicCache`` appends a step's keys and values with ``torch.cat``, copying
    the whole cache (read and write) every step; a paged cache (vLLM, Kwon et al., "Efficient
    Memory Management for Large Language Model Serving with PagedAttention", SOSP 2023) writes
    only the new tokens into a block. Ops marked ``attrs["kv_cache"] == "append"`` by the capture
    keep their place and dependencies but move only the new tokens: their last input.
    """
    if not any(op.attrs.get("kv_cache") == "append" for op in trace.ops):
        return trace
    ops = tuple(_paged(op) if op.attrs.get("kv_cache") == "append" else op for op in trace.ops)
    return Trace(ops=ops, meta={**trace.meta, "kv_cache": "paged"})


def _paged(op: Op) -> Op:
    new_tokens = op.inputs[-1].nbytes if op.inputs else op.bytes_written
    return replace(op, bytes_read=new_tokens, bytes_written=new_tokens,
                   attrs={**op.attrs, "kv_cache": "paged"})


def cuda_graph_costs(ops: Sequence[Op], costs: Sequence[OpCost], launch_s: float) -> list[OpCost]:
    """The costs of ``ops`` replayed as CUDA graphs (vLLM, TensorRT-LLM and SGLang capture their
    decode steps this way): the host launches one graph per rank and region instead of
    dispatching each op, so t_pre is ``launch_s`` for the first op of each region and 0 for the
    others (NVIDIA CUDA C++ Programming Guide, "CUDA Graphs": one launch submits the whole
    graph). A synchronizing op (a host read of a device value) cannot be captured: it keeps its
    t_pre, and the next op starts a new graph. Kernel times are unchanged."""
    out, new_graph = [], {}
    for op, cost in zip(ops, costs, strict=True):
        if op.sync:
            out.append(cost)
            new_graph[op.rank] = True
            continue
        first = new_graph.get(op.rank, True)
        new_graph[op.rank] = False
        out.append(replace(cost, t_pre_s=launch_s if first else 0.0))
    return out
