"""A single-device trace to a :class:`~sim.cluster.workload.ParallelWorkload`.

Legend: t tensor-parallel degree, p pipeline stages, d data-parallel degree, e expert-parallel
degree, M micro-batches per iteration.

Order: tensor parallelism over the whole trace (:mod:`workloads.parallel.tensor`; its
communication stays inside a layer or at the model's ends), the cut into p stages
(:mod:`workloads.parallel.pipeline`), then per stage expert parallelism, the memory, activation
recomputation and data parallelism (:mod:`workloads.parallel.expert`,
:mod:`workloads.parallel.recompute`, :mod:`workloads.parallel.data`; the last two may revise the
memory they change). The source trace is one micro-batch of one data-parallel replica.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from sim.cluster.workload import ParallelPlan, ParallelWorkload, StageProgram
from sim.errors import InputError
from sim.timeline import layer_of
from sim.trace import Op, Trace
from workloads.parallel.memory import forward_params, stage_memory
from workloads.parallel.pipeline import split_stages
from workloads.parallel.tensor import tensor_parallel

__all__ = ["parallelize", "split_phases"]


def split_phases(ops: Sequence[Op]) -> tuple[list[Op], list[Op], list[Op]]:
    """Forward, backward and optimizer ops in program order (``other`` ops join the phase of
    the op before them)."""
    lists: dict[str, list[Op]] = {"forward": [], "backward": [], "optimizer": []}
    current = "forward"
    for op in ops:
        if op.phase in lists:
            current = op.phase
        lists[current].append(op)
    return lists["forward"], lists["backward"], lists["optimizer"]


def parallelize(trace: Trace, plan: ParallelPlan) -> ParallelWorkload:
    """Per-stage programs of ``trace`` run under ``plan`` (see the module doc)."""
    forward, backward, step = split_phases(trace.ops)
    if not forward:
        raise InputError("the trace has no forward ops to parallelize")
    if plan.recompute and not backward:
        raise InputError("activation recomputation needs a training trace (with backward ops); "
                         f"this is a {trace.meta.get('phase', 'inference')} trace",
                         field="--recompute")
    tied = "" if backward else _tied_lm_head(forward, trace.meta.get("params"))
    counter = itertools.count(max(op.id for op in trace.ops) + 1)

    def next_id() -> int:
        return next(counter)

    forward, backward, step = tensor_parallel(
        forward, backward, step, t=plan.tp, sequence_parallel=plan.sequence_parallel,
        next_id=next_id)
    dtype = _model_dtype(trace)
    programs = []
    for s, ops in enumerate(_split(forward, backward, step, plan, next_id)):
        if plan.ep > 1:
            from workloads.parallel.expert import apply_expert_parallel

            ops.forward = apply_expert_parallel(ops.forward, plan, next_id)
            ops.backward = apply_expert_parallel(ops.backward, plan, next_id)
        memory = stage_memory(ops.forward, ops.backward, ops.step, dtype=dtype, ep=plan.ep,
                              tied_module=tied)
        program = StageProgram(stage=s, forward=tuple(ops.forward), backward=tuple(ops.backward),
                               step=tuple(ops.step), memory_bytes=memory)
        if plan.recompute:
            from workloads.parallel.recompute import apply_recompute

            program = apply_recompute(program, next_id)
        if plan.dp > 1:
            from workloads.parallel.data import apply_data_parallel

            program = apply_data_parallel(program, plan, next_id)
        programs.append(program)
    return ParallelWorkload(plan=plan, stages=tuple(programs), meta=_meta(trace, plan))


def _tied_lm_head(forward: Sequence[Op], params: object) -> str:
    """The LM head's module if the trace's parameter count shows it shares the embedding table."""
    lm = next((op for op in reversed(forward) if op.category == "gemm" and op.module
               and layer_of(op.module) < 0), None)
    if lm is None or not isinstance(params, int):
        return ""
    weight = int(lm.attrs["k"]) * int(lm.attrs["n"])
    excess = forward_params(forward) - params
    return lm.module if abs(excess - weight) <= int(lm.attrs["n"]) else ""  # (bias: n)


def _model_dtype(trace: Trace) -> str:
    dtype = trace.meta.get("dtype")
    if isinstance(dtype, str) and dtype in ("fp32", "bf16", "fp16", "fp8", "fp64"):
        return dtype
    gemms = [op.dtype for op in trace.ops if op.category == "gemm"]
    return max(set(gemms), key=gemms.count) if gemms else "fp32"


def _meta(trace: Trace, plan: ParallelPlan) -> dict[str, object]:
    """Source meta plus iteration totals. ``model_flops`` counts forward and backward of M
    micro-batches on d replicas, not the optimizer (as MFU does: Chowdhery et al. 2022, PaLM,
    app. B), which is in ``optimizer_flops`` (one replica's step)."""
    by_phase = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    for op in trace.ops:
        by_phase[op.phase if op.phase in by_phase else "forward"] += op.flops
    replicas = plan.microbatches * plan.dp
    tokens = trace.meta.get("tokens")
    return {
        **trace.meta,
        "model_flops": (by_phase["forward"] + by_phase["backward"]) * replicas,
        "optimizer_flops": by_phase["optimizer"],
        "trace_tokens": tokens,
        "tokens": tokens * replicas if isinstance(tokens, int | float) else None,
        "params": trace.meta.get("params"),
    }


def _split(forward, backward, step, plan: ParallelPlan, next_id) -> list:
    """The model chunks: p stages, or p v with virtual stages (chunk k on device k mod p)."""
    try:
        return split_stages(forward, backward, step, plan.chunks, next_id)
    except InputError as exc:
        if plan.virtual_stages == 1:
            raise
        raise InputError(f"{plan.pp} stages x {plan.virtual_stages} virtual stages = "
                         f"{plan.chunks} model chunks: {exc.message}",
                         field="--virtual-stages") from None
