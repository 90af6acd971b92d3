"""Expert parallelism: each rank of an expert-parallel group holds E / e experts of every MoE block.

Legend: T tokens of the micro-batch on this rank, k experts per token, E experts, e the
expert-parallel degree, h hidden size.

Model (GShard, Lepikhin et al. 2021, sec. 2.2; Switch Transformer, Fedus et al. 2022, sec. 2.2;
Megatron-LM expert parallelism): the e ranks of a group are data-parallel ranks, each with its own T
tokens. A dispatch all-to-all sends every (token, choice) slot to the rank holding its expert; the
rank runs its E / e experts on what it receives; a combine all-to-all sends the results back. With
balanced routing every rank receives, on average, the T k slots it sent, so the representative rank
runs its E / e experts on T k slots in all: the captured per-expert ops of experts [0, E / e) are
kept and rescaled so that each processes T k / (E / e) slots (largest remainder), and the ops of
the other experts are dropped. Token-proportional work (FLOPs, activation bytes) is thus the same
as on one device; weight bytes (reading an expert's weights, writing its gradient) are those of
E / e experts. Under skewed routing (``workloads.moe``, Zipf) the ranks' loads differ; the
representative rank takes the mean load, so the slowest rank is underestimated.

Each all-to-all moves the rank's T k slots of h elements: ``bytes`` = T k h x dtype bytes (the
nccl-tests per-rank input). Backward mirrors forward: the output gradients go to the experts by
an all-to-all before the expert ops, the input gradients come back by one after. Router (gate) ops
are not sharded. Optimizer ops of expert parameters (stacked ``(E, ...)`` tensors) are sharded to
``(E / e, ...)``.

The per-expert ops are found through the structure that static routing (:mod:`workloads.moe`)
gives an experts module: in forward, each expert's ops start with the ``arange`` of its token
slots; in backward (experts in reverse order), with the ``index_select`` that is the gradient of
its ``index_add_``. Tensors are told apart by shape: ``(E, ...)`` is a stacked weight (scaled by
1 / e), an expert's weight slice or its transpose is a weight (unscaled), anything else is
token-proportional. A token count equal to h or the FFN width makes that shape ambiguous; an op's
bytes may then be off, its FLOPs not.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from sim.cluster.workload import ParallelPlan
from sim.errors import InputError
from sim.trace import Op, TensorMeta

__all__ = ["apply_expert_parallel", "experts_module", "is_expert_param"]

_EXPERTS = re.compile(r"^(?P<experts>(?P<block>.+)\.experts)(?:\.|$)")
#: The op that opens one expert's ops in static routing's experts module, per phase.
_CHUNK_START = {"forward": "aten::arange", "backward": "aten::index_select"}
#: Ops whose 3-D tensors are the stacked expert weights (E, ...): the weight select and its grad.
_WEIGHT_OPS = {"aten::select": "inputs", "aten::select_backward": "outputs"}


def experts_module(path: str) -> str | None:
    """``model.layers.0.mlp.experts.act_fn`` -> ``model.layers.0.mlp.experts``; None outside."""
    match = _EXPERTS.match(path)
    return match["experts"] if match else None


def is_expert_param(name: str) -> bool:
    """Whether parameter ``name`` belongs to an experts module (its tensors are sharded by ep)."""
    return experts_module(name) is not None


def apply_expert_parallel(ops: Sequence[Op], plan: ParallelPlan,
                          next_id: Callable[[], int]) -> list[Op]:
    """``ops`` with every MoE block's experts sharded over ``plan.ep`` ranks (module doc).

    Works on any op list (forward, backward, step or a whole trace); ``ep == 1`` returns a copy.
    Raises :class:`InputError` when ep does not divide a block's expert count.
    """
    if plan.ep == 1:
        return list(ops)
    regions: dict[tuple[str, str], list[int]] = {}
    for i, op in enumerate(ops):
        module = experts_module(op.module)
        if module is not None and op.phase in _CHUNK_START:
            regions.setdefault((module, op.phase), []).append(i)
    shards = [_shard_region([ops[i] for i in idx], module, phase, plan.ep, next_id)
              for (module, phase), idx in regions.items()]
    sharded = _splice(ops, shards)
    return [_shard_optimizer_op(op, plan.ep) if _is_expert_optimizer_op(op) else op
            for op in sharded]


@dataclass(frozen=True)
class _RegionShard:
    """One experts module's ops of one phase after sharding: the kept (rescaled) ops, the ids of
    the dropped ones, and the two all-to-alls around them."""

    ids: frozenset[int]
    kept: dict[int, Op]
    dispatch: Op
    combine: Op


def _shard_region(region: list[Op], module: str, phase: str, ep: int,
                  next_id: Callable[[], int]) -> _RegionShard:
    block = module.rsplit(".", 1)[0]
    prologue, chunks = _split_chunks(region, phase, module)
    fulls = {t.shape for op in region if op.name in _WEIGHT_OPS
             for t in getattr(op, _WEIGHT_OPS[op.name]) if len(t.shape) == 3}
    num_experts = next(iter(fulls))[0] if fulls else len(chunks)
    _check_divides(ep, num_experts, block)
    keep = num_experts // ep
    kept_chunks = chunks[:keep] if phase == "forward" else chunks[-keep:]
    counts = [chunk[0].outputs[0].shape[0] for chunk in chunks]  # n_e per captured expert
    slots = sum(counts)  # T k
    targets = _even_split(slots, len(kept_chunks))
    shapes = _WeightShapes(fulls=frozenset(fulls), ep=ep)
    kept = {op.id: op for op in prologue}
    for chunk, target in zip(kept_chunks, targets, strict=True):
        n = chunk[0].outputs[0].shape[0]
        kept.update((op.id, _rescale_op(op, n, target, shapes)) for op in chunk)
    h, dtype = _token_row(chunks[0], counts[0])
    message = TensorMeta((slots, h), dtype)
    dispatch, combine = (_alltoall(next_id(), message, module, phase, role)
                         for role in ("dispatch", "combine"))
    return _RegionShard(frozenset(op.id for op in region), kept, dispatch, combine)


def _split_chunks(region: list[Op], phase: str, module: str) -> tuple[list[Op], list[list[Op]]]:
    starts = [i for i, op in enumerate(region) if op.name == _CHUNK_START[phase]]
    if not starts:
        raise InputError(f"cannot find the per-expert ops of {module} ({phase}); expert "
                         "parallelism needs the static routing of workloads.moe", field="--ep")
    bounds = [*starts, len(region)]
    return region[: starts[0]], [region[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def _check_divides(ep: int, num_experts: int, block: str) -> None:
    if num_experts % ep:
        raise InputError(f"{ep} does not divide the {num_experts} experts of {block}",
                         field="--ep")


def _even_split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


def _token_row(chunk: list[Op], n: int) -> tuple[int, str]:
    """(h, dtype) of the chunk's first (n, h) token tensor: the gathered hidden states."""
    for op in chunk:
        for t in op.outputs:
            if len(t.shape) == 2 and t.shape[0] == n and op.category != "view":
                return t.shape[1], t.dtype
    raise InputError(f"cannot find the hidden states of the experts in {chunk[0].module}",
                     field="--ep")


def _alltoall(op_id: int, message: TensorMeta, module: str, phase: str, role: str) -> Op:
    return Op(id=op_id, name="nccl:alltoall", category="collective", dtype=message.dtype,
              inputs=(message,), outputs=(message,), module=module, phase=phase,
              attrs={"collective": "alltoall", "group": "ep", "bytes": message.nbytes,
                     "role": role})


@dataclass(frozen=True)
class _WeightShapes:
    """Shapes of the stacked expert weights ``(E, ...)`` and, derived, of one expert's slice."""

    fulls: frozenset[tuple[int, ...]]
    ep: int

    def kind(self, shape: tuple[int, ...]) -> str:
        if shape in self.fulls:
            return "full"
        slices = {f[1:] for f in self.fulls} | {f[1:][::-1] for f in self.fulls}
        return "slice" if shape in slices else "token"


def _rescale_op(op: Op, n: int, target: int, shapes: _WeightShapes) -> Op:
    """``op`` of an expert that ran ``n`` token slots, rescaled to ``target`` slots."""
    r = target / n
    kinds = [shapes.kind(t.shape) for t in (*op.inputs, *op.outputs)]
    if "token" in kinds:
        flops = op.flops * r
    else:
        flops = op.flops / shapes.ep if "full" in kinds else op.flops
    return replace(op, flops=flops,
                   bytes_read=_rescale_bytes(op.bytes_read, op.inputs, r, shapes),
                   bytes_written=_rescale_bytes(op.bytes_written, op.outputs, r, shapes),
                   inputs=tuple(_rescale_tensor(t, n, target, shapes) for t in op.inputs),
                   outputs=tuple(_rescale_tensor(t, n, target, shapes) for t in op.outputs),
                   attrs=_rescale_gemm(op, n, target, shapes))


def _rescale_bytes(total: float, tensors: Iterable[TensorMeta], r: float,
                   shapes: _WeightShapes) -> float:
    """Token-proportional bytes x r, stacked-weight bytes / e, a weight slice's bytes as they are.

    An op's bytes need not be the sum of its tensors (a gather reads only the gathered rows), so
    the weight parts are clipped to the total and the rest is taken as token-proportional.
    """
    tensors = list(tensors)
    slice_b = min(total, sum(t.nbytes for t in tensors if shapes.kind(t.shape) == "slice"))
    full_b = min(total - slice_b, sum(t.nbytes for t in tensors if shapes.kind(t.shape) == "full"))
    return (total - slice_b - full_b) * r + slice_b + full_b / shapes.ep


def _rescale_tensor(t: TensorMeta, n: int, target: int, shapes: _WeightShapes) -> TensorMeta:
    kind = shapes.kind(t.shape)
    if kind == "full":
        return TensorMeta((t.shape[0] // shapes.ep, *t.shape[1:]), t.dtype)
    if kind == "slice" or not t.shape:
        return t
    if t.shape[0] == n:
        return TensorMeta((target, *t.shape[1:]), t.dtype)
    if t.shape[-1] == n:  # a transposed token tensor, e.g. the A operand of a weight-grad GEMM
        return TensorMeta((*t.shape[:-1], target), t.dtype)
    return t


def _rescale_gemm(op: Op, n: int, target: int, shapes: _WeightShapes) -> dict:
    attrs = dict(op.attrs)
    if op.category != "gemm":
        return attrs
    weight_grad = any(shapes.kind(t.shape) == "slice" for t in op.outputs)
    order = ("k", "m", "n") if weight_grad else ("m", "k", "n")  # where the tokens are
    dim = next((d for d in order if attrs.get(d) == n), None)
    if dim is not None:
        attrs[dim] = target
    return attrs


def _splice(ops: Sequence[Op], shards: list[_RegionShard]) -> list[Op]:
    """Replace each region by dispatch + kept ops + combine and rewire deps around them."""
    region_of = {i: s for s in shards for i in s.ids}
    dropped = {i for s in shards for i in s.ids if i not in s.kept}
    by_id = {op.id: op for op in ops}
    bypass = _Bypass(by_id, dropped)
    first = {s.dispatch.id: min(i for i, op in enumerate(ops) if op.id in s.ids) for s in shards}
    last = {s.combine.id: max(i for i, op in enumerate(ops) if op.id in s.ids) for s in shards}
    position = {op.id: i for i, op in enumerate(ops)}
    out: list[Op] = []
    for i, op in enumerate(ops):
        for s in shards:
            if first[s.dispatch.id] == i:
                out.append(replace(s.dispatch, deps=_dispatch_deps(s, ops, bypass, position, i)))
        shard = region_of.get(op.id)
        if shard is None:
            deps = [region_of[d].combine.id if d in region_of else d for d in bypass(op.deps)]
            out.append(replace(op, deps=_unique(deps)))
        elif op.id in shard.kept:
            out.append(_rewire_region_op(shard.kept[op.id], shard, by_id, bypass))
        for s in shards:
            if last[s.combine.id] == i:
                sinks = [o.id for o in s.kept.values() if o.phase == s.dispatch.phase]
                out.append(replace(s.combine, deps=tuple(sinks[-1:])))
    return out


def _dispatch_deps(shard: _RegionShard, ops: Sequence[Op], bypass: _Bypass,
                   position: dict[int, int], at: int) -> tuple[int, ...]:
    phase = shard.dispatch.phase
    deps = [d for op in shard.kept.values() for d in bypass(op.deps)
            if d not in shard.ids and d in position and position[d] < at
            and ops[position[d]].phase == phase]
    return _unique(deps)


def _rewire_region_op(op: Op, shard: _RegionShard, by_id: dict[int, Op],
                      bypass: _Bypass) -> Op:
    """External deps of the same phase now arrive through the dispatch all-to-all."""
    deps = []
    for d in bypass(op.deps):
        external = d not in shard.ids and d in by_id and by_id[d].phase == op.phase
        deps.append(shard.dispatch.id if external else d)
    return replace(op, deps=_unique(deps))


class _Bypass:
    """Deps with every dropped op replaced, transitively, by the ops it depended on."""

    def __init__(self, by_id: dict[int, Op], dropped: set[int]):
        self._by_id, self._dropped, self._memo = by_id, dropped, {}

    def __call__(self, deps: Iterable[int]) -> list[int]:
        return [r for d in deps for r in self._resolve(d)]

    def _resolve(self, dep: int) -> tuple[int, ...]:
        if dep not in self._dropped:
            return (dep,)
        if dep not in self._memo:  # deps outside this list (forward, for backward) ran before
            self._memo[dep] = _unique(d for d in self(self._by_id[dep].deps) if d in self._by_id)
        return self._memo[dep]


def _unique(ids: Iterable[int]) -> tuple[int, ...]:
    return tuple(dict.fromkeys(ids))


def _is_expert_optimizer_op(op: Op) -> bool:
    return op.phase == "optimizer" and is_expert_param(str(op.attrs.get("param", "")))


def _shard_optimizer_op(op: Op, ep: int) -> Op:
    """An optimizer op of a stacked ``(E, ...)`` expert parameter, on this rank's E / e experts."""
    stacked = [t for t in (*op.inputs, *op.outputs) if len(t.shape) >= 2]
    if not stacked:  # the step count: not sharded
        return op
    num_experts = stacked[0].shape[0]
    block = str(experts_module(str(op.attrs["param"]))).rsplit(".", 1)[0]
    _check_divides(ep, num_experts, block)

    def shard(t: TensorMeta) -> TensorMeta:
        if len(t.shape) >= 2 and t.shape[0] == num_experts:
            return TensorMeta((num_experts // ep, *t.shape[1:]), t.dtype)
        return t

    return replace(op, flops=op.flops / ep, bytes_read=op.bytes_read / ep,
                   bytes_written=op.bytes_written / ep, inputs=tuple(map(shard, op.inputs)),
                   outputs=tuple(map(shard, op.outputs)))
