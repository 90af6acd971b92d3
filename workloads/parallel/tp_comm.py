"""Tensor-parallel communication, placed in line on the compute stream (Megatron-LM runs it there).

Legend: t tensor-parallel degree, b batch, s sequence, h hidden.

Per attention or MLP block (Shoeybi et al. 2019, arXiv:1909.08053, sec. 3, fig. 3): an
all-reduce of the block output (b*s*h) after the block's forward, one of the block-input gradient
after its backward. With sequence parallelism (Korthikanti et al. 2022, arXiv:2205.05198,
sec. 4.2.2) each becomes an all-gather of the block input before the block and a reduce-scatter
after it. The vocab-parallel embedding all-reduces (reduce-scatters) its output; the
vocab-parallel cross entropy all-reduces the per-token max and sum of the logits (b*s fp32 each);
the LM head's backward all-reduces (reduce-scatters) its input gradient; an inference trace
all-gathers the logits. A collective's ``deps`` are the block ops read after the block, and the
ops after the block read the collective instead.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sim.timeline import layer_of
from sim.trace import Op, TensorMeta
from workloads.parallel.roles import block_of

__all__ = ["Region", "insert_collectives", "tp_collective"]

_FP32_BYTES = 4  # Megatron's vocab-parallel cross entropy reduces fp32 per-token statistics
_VOCAB = "vocab"


@dataclass(frozen=True)
class Region:
    """Where the collectives go: the vocab-parallel ends of the model and the options."""

    embed_id: int
    lm_module: str
    tokens: int  # b * s
    sequence_parallel: bool
    train: bool
    t: int


def tp_collective(op_id: int, kind: str, nbytes: float, *, deps: Sequence[int], module: str,
                  phase: str, dtype: str, output: TensorMeta | None = None) -> Op:
    """A collective over the tensor-parallel group (``attrs["bytes"]``: nccl-tests convention;
    ``output``: the tensor it leaves on each rank)."""
    return Op(id=op_id, name=f"nccl:{kind}", category="collective", deps=tuple(dict.fromkeys(deps)),
              dtype=dtype, stream=0, module=module, phase=phase,
              outputs=(output,) if output is not None else (),
              attrs={"collective": kind, "group": "tp", "bytes": float(nbytes)})


def _result(kind: str, tensor: TensorMeta | None, t: int) -> TensorMeta | None:
    """What a collective of ``tensor`` (the full b*s*h block output) leaves on one rank."""
    if tensor is None or kind != "reducescatter" or not tensor.shape:
        return tensor
    dim = 1 if len(tensor.shape) >= 3 else 0  # (b, s, h): the sequence; (b*s, h): the tokens
    shape = list(tensor.shape)
    shape[dim] //= t
    return TensorMeta(shape=tuple(shape), dtype=tensor.dtype)


def _out(op: Op) -> TensorMeta | None:
    return op.outputs[0] if op.outputs else None


def _out_bytes(op: Op) -> float:
    return float(op.outputs[0].nbytes) if op.outputs else float(op.bytes_written)


class _Placer:
    """Collects collectives to place before / after list positions and the deps they take over."""

    def __init__(self, ops: Sequence[Op], phase: str, next_id: Callable[[], int]):
        self.ops, self.phase, self.next_id = ops, phase, next_id
        self.before: dict[int, list[Op]] = defaultdict(list)
        self.after: dict[int, list[Op]] = defaultdict(list)
        self.takeover: dict[int, tuple[int, int]] = {}  # dep -> (collective, from after index)
        self.entry: dict[int, dict[int, int]] = {}  # member op -> {dep: all-gather}

    def remap(self, dep: int, index: int) -> int:
        for _ in range(8):  # a dep is taken over at most by a short chain
            found = self.takeover.get(dep)
            if found is None or index <= found[1]:
                break
            dep = found[0]
        return dep

    def add_after(self, index: int, kind: str, nbytes: float, deps: Sequence[int],
                  module: str, output: TensorMeta | None = None) -> Op:
        op = tp_collective(self.next_id(), kind, nbytes, deps=[self.remap(d, index + 1)
                                                               for d in deps],
                           module=module, phase=self.phase, dtype=self.ops[index].dtype,
                           output=output)
        self.after[index].append(op)
        for dep in deps:
            self.takeover[dep] = (op.id, index)
        return op

    def add_before(self, index: int, kind: str, nbytes: float, members: Sequence[int],
                   module: str, ids: set[int], output: TensorMeta | None = None) -> None:
        member_ids = {self.ops[i].id for i in members}
        entries = list(dict.fromkeys(d for i in members for d in self.ops[i].deps
                                     if d in ids and d not in member_ids))
        op = tp_collective(self.next_id(), kind, nbytes,
                           deps=[self.remap(d, index) for d in entries], module=module,
                           phase=self.phase, dtype=self.ops[index].dtype, output=output)
        self.before[index].append(op)
        for i in members:
            self.entry[self.ops[i].id] = dict.fromkeys(entries, op.id)

    def build(self) -> list[Op]:
        out: list[Op] = []
        for i, op in enumerate(self.ops):
            out.extend(self.before.get(i, ()))
            entry = self.entry.get(op.id, {})
            deps = tuple(dict.fromkeys(entry.get(d) or self.remap(d, i) for d in op.deps))
            out.append(op if deps == op.deps else dataclasses.replace(op, deps=deps))
            out.extend(self.after.get(i, ()))
        return out


def insert_collectives(ops: Sequence[Op], region: Region, phase: str,
                       sharded: Mapping[int, bool], next_id: Callable[[], int]) -> list[Op]:
    """``ops`` (one phase, already sharded) with the tensor-parallel collectives in line."""
    placer = _Placer(ops, phase, next_id)
    sp = region.sequence_parallel
    reduce = "reducescatter" if sp else "allreduce"
    ids = {op.id for op in ops}
    readers: dict[int, set[int]] = defaultdict(set)
    for op in ops:
        for dep in op.deps:
            readers[dep].add(op.id)
    if phase == "forward":
        for i, op in enumerate(ops):
            if op.id == region.embed_id:
                placer.add_after(i, reduce, _out_bytes(op), [op.id], op.module,
                                 _result(reduce, _out(op), region.t))
    for key, members in _regions(ops, region.lm_module).items():
        _place_region(placer, key, members, region, ids, readers, sharded)
    if phase == "forward" and region.train:
        _place_cross_entropy(placer, region, sharded)
    return placer.build()


def _regions(ops: Sequence[Op], lm_module: str) -> dict[str, list[int]]:
    """Block module (or ``vocab`` for the LM head) -> positions of its ops, in order."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, op in enumerate(ops):
        found = block_of(op.module)
        if found is not None:
            groups[found[0]].append(i)
        elif lm_module and op.module == lm_module:
            groups[_VOCAB].append(i)
    return dict(groups)


def _place_region(placer: _Placer, key: str, members: list[int], region: Region,
                  ids: set[int], readers: Mapping[int, set[int]],
                  sharded: Mapping[int, bool]) -> None:
    ops, phase, sp = placer.ops, placer.phase, region.sequence_parallel
    member_ids = {ops[i].id for i in members}
    # the partial sums read after the block (split outputs, e.g. a tied weight's gradient read
    # by the embedding, need no reduction)
    exits = [i for i in members
             if readers.get(ops[i].id, set()) - member_ids and not sharded.get(ops[i].id)]
    module = region.lm_module if key == _VOCAB else key
    reduce = "reducescatter" if sp else "allreduce"
    full = _out_bytes(ops[exits[-1]]) if exits else 0.0
    tensor = _out(ops[exits[-1]]) if exits else None
    if key == _VOCAB and phase == "forward":
        if sp:
            gemm = next((ops[i] for i in members if ops[i].category == "gemm"), None)
            if gemm is not None and len(gemm.inputs) >= 2:
                placer.add_before(members[0], "allgather", gemm.inputs[-2].nbytes, members,
                                  module, ids)
        if not region.train:  # serving: every rank samples from the gathered logits
            last = members[-1]
            placer.add_after(last, "allgather", _out_bytes(ops[last]) * region.t,
                             [ops[last].id], module)
        return
    if sp and key != _VOCAB and exits:
        placer.add_before(members[0], "allgather", full, members, module, ids, tensor)
    if exits:
        placer.add_after(members[-1], reduce, full, [ops[i].id for i in exits], module,
                         _result(reduce, tensor, region.t))


def _place_cross_entropy(placer: _Placer, region: Region, sharded: Mapping[int, bool]) -> None:
    """Two all-reduces (max, then sum of exp) after the first split reduction past the head."""
    for i, op in enumerate(placer.ops):
        if (op.category == "reduction" and sharded.get(op.id) and op.module != region.lm_module
                and layer_of(op.module) < 0):
            nbytes = region.tokens * _FP32_BYTES
            first = placer.add_after(i, "allreduce", nbytes, [op.id], op.module)
            second = tp_collective(placer.next_id(), "allreduce", nbytes, deps=[first.id],
                                   module=op.module, phase=placer.phase, dtype=op.dtype)
            placer.after[i].append(second)
            placer.takeover[op.id] = (second.id, i)
            return
