"""Data parallelism: gradient buckets reduced while backward runs (PyTorch DDP), and ZeRO sharding.

Legend: d data-parallel degree, e expert-parallel degree, C the bucket cap (``plan.bucket_bytes``).

DDP (Li et al., VLDB 2020, "PyTorch Distributed", sec. 3.2.3): a parameter's gradient is ready when
the backward op it waits for has run: the latest backward op that the parameter's optimizer ops
depend on (the autograd node that produces the gradient, AccumulateGrad firing after it; if they
carry no backward deps, the last compute op of the parameter's module in backward). In the
order gradients become ready, parameters fill buckets of at most C bytes (numel x the dtype bytes
of the parameter's optimizer ops; a parameter larger than C gets a bucket of its own). Right after
the op that completes a bucket, an all-reduce of it starts on the communication stream 1, in the
last micro-batch's backward only (gradients accumulate locally before). Each parameter's optimizer
ops then wait for its bucket's reduction. Simplified: DDP's smaller first bucket
(``_DEFAULT_FIRST_BUCKET_BYTES``, 1 MiB) and its bucket rebuild after the first iteration are not
modeled; a parameter of this stage that no backward op produces is taken as ready at the end of
backward.

ZeRO (Rajbhandari et al., SC'20, sec. 5), ``plan.zero``:

- 1 (optimizer state sharded; Megatron's distributed optimizer): buckets are reduce-scattered
  instead of all-reduced (same per-rank input bytes); each rank updates 1 / d of every parameter,
  so the optimizer ops' FLOPs, bytes and parameter-shaped tensors (flattened, as ZeRO's flat
  buffers) shrink by d; after the optimizer, one all-gather on stream 0 of the stage's updated
  parameters (``bytes`` = parameter bytes: the gathered output). Memory: optimizer / d.
- 2 (and gradients): as 1; the reduce-scatter runs in every micro-batch (a rank keeps only its
  1 / d gradient shard between micro-batches, DeepSpeed ZeRO-2), so ``last_microbatch`` is False.
  Memory: gradients / d too.
- 3 (and parameters, FSDP): as 2, and before each layer's forward ops and before its backward ops
  an all-gather of the layer's parameters on stream 1 with no deps (it may start, prefetched, as
  soon as it is issued); the layer's ops that depend on no other op of the layer wait for it.
  Parameters outside the layers (embedding, final norm, head) form one root unit, gathered the
  same way. The post-step all-gather of 1 and 2 is not needed (the next forward gathers). Memory:
  weights / d too.

With expert parallelism (e > 1) an expert's parameters are replicated on d / e ranks only (the
ranks holding the same experts): their gradients are reduced in buckets of their own over the
group ``dp_ep`` of those d / e ranks, and ZeRO shards them d / e ways. With d / e = 1 they need
no reduction and are not sharded. ``memory_bytes`` is scaled by d as a whole.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from sim.cluster.workload import ParallelPlan, StageProgram
from sim.trace import Op, TensorMeta
from sim.units import DTYPE_BYTES
from workloads.parallel.expert import is_expert_param
from workloads.parallel.recompute import layer_of

__all__ = ["apply_data_parallel", "ParamGrad", "Bucket", "param_grads", "make_buckets"]

_NOT_PRODUCERS = frozenset({"view", "collective", "send_recv"})


@dataclass(frozen=True)
class ParamGrad:
    """One parameter of a stage: elements, dtype, the backward op after which its gradient is
    complete (``ready``, an id), the data-parallel group that reduces it and that group's size."""

    name: str
    numel: int
    dtype: str
    ready: int
    group: str
    num_ranks: int

    @property
    def nbytes(self) -> float:
        return self.numel * DTYPE_BYTES[self.dtype]


@dataclass(frozen=True)
class Bucket:
    """Parameters whose gradients are reduced by one collective, in the order they became ready."""

    group: str
    params: tuple[ParamGrad, ...]

    @property
    def nbytes(self) -> float:
        return sum(p.nbytes for p in self.params)


def apply_data_parallel(program: StageProgram, plan: ParallelPlan,
                        next_id: Callable[[], int]) -> StageProgram:
    """``program`` with gradient reduction and ZeRO sharding over ``plan.dp`` (module doc)."""
    if plan.dp == 1:
        return program
    grads = [g for g in param_grads(program, plan) if g.num_ranks > 1]
    buckets = make_buckets(grads, plan.bucket_bytes)
    backward, bucket_of = _add_reductions(program.backward, buckets, plan.zero, next_id)
    step = [replace(op, deps=(*op.deps, bucket_of[op.attrs["param"]]))
            if op.attrs.get("param") in bucket_of else op for op in program.step]
    forward = list(program.forward)
    if plan.zero >= 1:
        sharded = {g.name: g for g in grads}
        step = [_shard_optimizer_op(op, sharded[op.attrs.get("param")])
                if op.attrs.get("param") in sharded else op for op in step]
    if plan.zero in (1, 2):
        step += _step_allgathers(step, grads, next_id)
    if plan.zero == 3:
        forward = _gather_units(forward, grads, next_id)
        backward = _gather_units(backward, grads, next_id)
    return replace(program, forward=tuple(forward), backward=tuple(backward), step=tuple(step),
                   memory_bytes=_memory(program.memory_bytes, plan))


def param_grads(program: StageProgram, plan: ParallelPlan) -> list[ParamGrad]:
    """The stage's parameters (from its optimizer ops) in the order their gradients are ready."""
    position = {op.id: i for i, op in enumerate(program.backward)}
    end = len(program.backward) - 1
    ops_of: dict[str, list[Op]] = {}
    for op in program.step:
        if "param" in op.attrs:
            ops_of.setdefault(op.attrs["param"], []).append(op)
    grads = []
    for name, ops in ops_of.items():
        ready = max((position[d] for op in ops for d in op.deps if d in position), default=None)
        if ready is None:
            ready = _last_op_of(program.backward, ops[0].module, end)
        main = max((t for op in ops for t in op.inputs), key=lambda t: t.numel, default=None)
        if main is None:
            continue
        expert = plan.ep > 1 and is_expert_param(name)
        grads.append(ParamGrad(name=name, numel=main.numel, dtype=main.dtype, ready=ready,
                               group="dp_ep" if expert else "dp",
                               num_ranks=plan.dp // plan.ep if expert else plan.dp))
    # DDP registers buckets in reverse parameter order: the tie-break among equally ready params
    order = {name: i for i, name in enumerate(reversed(ops_of))}
    grads.sort(key=lambda g: (g.ready, order[g.name]))
    if program.backward:
        grads = [replace(g, ready=program.backward[g.ready].id) for g in grads]
    return grads


def _last_op_of(backward: Sequence[Op], module: str, default: int) -> int:
    """Position of the last compute op of ``module`` (the parameter's module) in backward: the
    readiness of a gradient whose optimizer ops carry no deps (e.g. stripped by the caller)."""
    inside = [i for i, op in enumerate(backward) if op.category not in _NOT_PRODUCERS
              and (op.module == module or op.module.startswith(module + "."))]
    return inside[-1] if inside and module else default


def make_buckets(grads: Sequence[ParamGrad], cap_bytes: float) -> list[Bucket]:
    """Consecutive ready parameters, per group, into buckets of at most ``cap_bytes``."""
    buckets: list[Bucket] = []
    open_: dict[str, list[ParamGrad]] = {}
    for g in grads:
        current = open_.setdefault(g.group, [])
        if current and sum(p.nbytes for p in current) + g.nbytes > cap_bytes:
            buckets.append(Bucket(g.group, tuple(current)))
            current.clear()
        current.append(g)
    buckets += [Bucket(group, tuple(ps)) for group, ps in open_.items() if ps]
    position = {g.name: i for i, g in enumerate(grads)}
    return sorted(buckets, key=lambda b: position[b.params[-1].name])


def _add_reductions(backward: Sequence[Op], buckets: Sequence[Bucket], zero: int,
                    next_id: Callable[[], int]) -> tuple[list[Op], dict[str, int]]:
    """Backward with one collective after the op completing each bucket; param -> its id."""
    after: dict[int, list[Op]] = {}
    bucket_of: dict[str, int] = {}
    for bucket in buckets:
        op = _collective(next_id(), "reducescatter" if zero else "allreduce", bucket.group,
                         bucket.nbytes, bucket.params[0].dtype, stream=1, phase="backward",
                         deps=_unique(p.ready for p in bucket.params),
                         last_microbatch=zero < 2, params=len(bucket.params))
        after.setdefault(bucket.params[-1].ready, []).append(op)
        bucket_of.update((p.name, op.id) for p in bucket.params)
    out = []
    for op in backward:
        out += [op, *after.pop(op.id, [])]
    for ops in after.values():  # ready at the end of a stage with no backward op
        out += [replace(o, deps=()) for o in ops]
    return out, bucket_of


def _collective(op_id: int, kind: str, group: str, nbytes: float, dtype: str, *, stream: int,
                phase: str, deps: tuple[int, ...] = (), module: str = "", **attrs) -> Op:
    return Op(id=op_id, name=f"nccl:{kind}", category="collective", dtype=dtype, stream=stream,
              phase=phase, deps=deps, module=module,
              attrs={"collective": kind, "group": group, "bytes": nbytes, **attrs})


def _shard_optimizer_op(op: Op, grad: ParamGrad) -> Op:
    """The op on this rank's 1 / n of the parameter (a flat shard, as ZeRO's flat buffers)."""
    n = grad.num_ranks

    def shard(t: TensorMeta) -> TensorMeta:
        return TensorMeta((math.ceil(t.numel / n),), t.dtype) if t.numel == grad.numel else t

    return replace(op, flops=op.flops / n, bytes_read=op.bytes_read / n,
                   bytes_written=op.bytes_written / n, inputs=tuple(map(shard, op.inputs)),
                   outputs=tuple(map(shard, op.outputs)))


def _step_allgathers(step: Sequence[Op], grads: Sequence[ParamGrad],
                     next_id: Callable[[], int]) -> list[Op]:
    """After the optimizer, one all-gather per group of the updated parameters (ZeRO-1/2)."""
    last_op = {op.attrs["param"]: op.id for op in step if "param" in op.attrs}
    out = []
    for group in _unique(g.group for g in grads):
        members = [g for g in grads if g.group == group]
        out.append(_collective(next_id(), "allgather", group, sum(g.nbytes for g in members),
                               members[0].dtype, stream=0, phase="optimizer",
                               deps=_unique(last_op[g.name] for g in members),
                               params=len(members)))
    return out


def _gather_units(ops: Sequence[Op], grads: Sequence[ParamGrad],
                  next_id: Callable[[], int]) -> list[Op]:
    """ZeRO-3: before each unit's (layer's) first op, an all-gather of its parameters; the unit's
    ops that depend on no other op of the unit wait for it."""
    params: dict[str, dict[str, list[ParamGrad]]] = {}
    for g in grads:
        params.setdefault(_unit(g.name), {}).setdefault(g.group, []).append(g)
    members: dict[str, set[int]] = {}
    for op in ops:
        if op.category != "send_recv":  # a stage's boundary recv and send stay first and last
            members.setdefault(_unit(op.module), set()).add(op.id)
    gathers = {unit: [_collective(next_id(), "allgather", group, sum(g.nbytes for g in ps),
                                  ps[0].dtype, stream=1, phase=ops[0].phase, module=unit,
                                  params=len(ps)) for group, ps in by_group.items()]
               for unit, by_group in params.items() if unit in members}
    pending = dict(gathers)
    out: list[Op] = []
    for op in ops:
        unit = _unit(op.module)
        if op.id not in members.get(unit, ()) or unit not in gathers:
            out.append(op)
            continue
        out += pending.pop(unit, [])
        if not any(d in members[unit] for d in op.deps):
            op = replace(op, deps=(*op.deps, *(g.id for g in gathers[unit])))
        out.append(op)
    return out


def _unit(path: str) -> str:
    """The ZeRO-3 unit of a module or parameter path: its layer, or "" (the root unit)."""
    return layer_of(path) or ""


def _memory(memory: dict | None, plan: ParallelPlan) -> dict:
    scaled = dict(memory or {})
    for key, stage in (("optimizer", 1), ("gradients", 2), ("weights", 3)):
        if plan.zero >= stage and key in scaled:
            scaled[key] = scaled[key] / plan.dp
    return scaled


def _unique(ids: Iterable[int]) -> tuple[int, ...]:
    return tuple(dict.fromkeys(ids))
