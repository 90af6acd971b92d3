"""From per-stage templates to the op instances each representative rank issues.

A stage's forward and backward templates run once per micro-batch; the pipeline schedule fixes
the order in which a stage issues them (Narayanan et al., "Efficient Large-Scale Language Model
Training on GPU Clusters Using Megatron-LM", SC'21, sec. 2.2, Fig. 3-4):

- GPipe (Huang et al., NeurIPS 2019): all M forwards, then all M backwards;
- 1F1B (PipeDream-Flush): stage s runs min(p - s - 1, M) warm-up forwards, then alternates one
  forward and one backward, then drains the remaining backwards. Same bubble as GPipe,
  (p - 1) / M of the ideal time, but at most p - s micro-batches of activations in flight.

The step template (optimizer, ZeRO all-gathers) runs once, after the last backward. An instance's
dependencies are its template op's dependencies in the same micro-batch (a backward op reading a
saved activation depends on that micro-batch's forward instance; a step op on the last
micro-batch). A stage's ``recv`` depends on the neighbour stage's matching ``send`` instance.
Instances are numbered globally: id == position in :attr:`Program.insts`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sim.cluster.workload import ParallelWorkload, StageProgram
from sim.errors import InputError
from sim.trace import Op

__all__ = ["Inst", "Program", "expand", "chunk_order", "interleaved_order", "device_order",
           "P2P_STREAM", "MAX_INSTANCES"]

#: Pipeline sends run on their own stream, so a stage's compute does not wait for the transfer
#: (Megatron-LM posts them with ``torch.distributed.batch_isend_irecv``).
P2P_STREAM = 2
#: More op instances than this would not fit in memory (~250 B each with their timeline): a
#: 1024-GPU 70B training step is 1.6 M.
MAX_INSTANCES = 20_000_000


class Inst:
    """One issued instance of a template op: ``op`` in micro-batch ``microbatch`` of ``stage``.

    Exposes what the engine and the records need (id, deps, rank, stream, sync and the op's
    name, category, module, phase, flops, bytes)."""

    __slots__ = ("id", "deps", "rank", "stream", "sync", "op", "microbatch")

    def __init__(self, id: int, deps: tuple[int, ...], rank: int, stream: int, op: Op,
                 microbatch: int):
        self.id, self.deps, self.rank, self.stream = id, deps, rank, stream
        self.sync, self.op, self.microbatch = op.sync, op, microbatch

    name = property(lambda self: self.op.name)
    category = property(lambda self: self.op.category)
    module = property(lambda self: self.op.module)
    phase = property(lambda self: self.op.phase)
    flops = property(lambda self: self.op.flops)
    bytes_read = property(lambda self: self.op.bytes_read)
    bytes_written = property(lambda self: self.op.bytes_written)
    attrs = property(lambda self: self.op.attrs)


@dataclass(frozen=True)
class Program:
    """All instances of all simulated ranks (the representatives: rank = stage index), in each
    rank's issue order; ``stage_ops[k]`` lists the template ops of model chunk k (for costing)."""

    insts: list[Inst]
    stage_ops: tuple[tuple[Op, ...], ...]
    microbatches: int


def chunk_order(schedule: str, stage: int, stages: int, microbatches: int,
                has_backward: bool) -> list[tuple[str, int]]:
    """The (F|B, micro-batch) chunks stage ``stage`` issues, in order (module doc)."""
    M = microbatches
    forwards = [("F", m) for m in range(M)]
    if not has_backward:
        return forwards
    if schedule == "gpipe":
        return forwards + [("B", m) for m in range(M)]
    warm = min(stages - stage - 1, M)
    order = forwards[:warm]
    for i in range(M - warm):
        order += [("F", warm + i), ("B", i)]
    return order + [("B", m) for m in range(M - warm, M)]


def interleaved_order(stage: int, stages: int, chunks_per_device: int,
                      microbatches: int) -> list[tuple[int, str, int]]:
    """(model chunk, F|B, micro-batch) in the order device ``stage`` issues them under
    Megatron-LM's interleaved 1F1B (``forward_backward_pipelining_with_interleaving``): warm-up
    forwards (p - s - 1) 2 + (v - 1) p, then one forward and one backward, then the drain;
    forward step i runs chunk (i // p) mod v of micro-batch (i // (p v)) p + i mod p, backward
    steps visit the chunks in reverse."""
    p, v, M = stages, chunks_per_device, microbatches
    total = M * v

    def step(i: int, kind: str) -> tuple[int, str, int]:
        j = (i // p) % v
        m = (i // (p * v)) * p + i % p
        return (stage + (j if kind == "F" else v - 1 - j) * p, kind, m)

    warm = min((p - stage - 1) * 2 + (v - 1) * p, total)
    order = [step(i, "F") for i in range(warm)]
    for t in range(total - warm):
        order += [step(warm + t, "F"), step(t, "B")]
    return order + [step(i, "B") for i in range(total - warm, total)]


def device_order(plan, stage: int, has_backward: bool) -> list[tuple[int, str, int]]:
    """Every (model chunk, F|B|S, micro-batch) device ``stage`` issues, in order: the schedule's
    chunks, then each of its chunks' step (optimizer) once."""
    p, v, M = plan.pp, plan.virtual_stages, plan.microbatches
    if v == 1:
        order = [(stage, kind, m) for kind, m in
                 chunk_order(plan.schedule, stage, p, M, has_backward)]
    elif has_backward:
        order = interleaved_order(stage, p, v, M)
    else:  # inference: each micro-batch's forward through the device's chunks in turn
        order = [(stage + j * p, "F", m) for m in range(M) for j in range(v)]
    return order + [(stage + j * p, "S", 0) for j in range(v)]


def expand(workload: ParallelWorkload,
           actors: Sequence[tuple[int, int]] | None = None,
           peer: Callable[[int, int], int] | None = None) -> Program:
    """Number and link every instance of every actor (module doc).

    ``actors`` lists (rank, device stage) of the ranks to simulate, default one per stage
    (rank = stage index, the representatives); ``peer(actor, stage)`` is the index of the actor
    that a ``recv`` of ``actor`` pairs with on device stage ``stage`` (default: that stage's
    actor). Model chunk k (``workload.stages[k]``) runs on device stage k mod p."""
    plan, chunks = workload.plan, workload.stages
    M, p = plan.microbatches, plan.pp
    if len(chunks) != plan.chunks:
        raise InputError(f"{len(chunks)} stage programs for {plan.chunks} model chunks",
                         field="stages")
    actors = list(actors) if actors is not None else [(s, s) for s in range(p)]
    peer = peer or (lambda actor, stage: stage)
    lists = [_variants(st) for st in chunks]
    total = sum(M * (len(lists[k]["F"]) + len(lists[k]["B"])) + len(lists[k]["S"])
                for _, s in actors for k in range(s, len(chunks), p))
    if total > MAX_INSTANCES:  # before anything grows with M
        raise InputError(f"absurd size: {total:,} op instances to simulate (at most "
                         f"{MAX_INSTANCES:,}); use fewer micro-batches or ranks",
                         field="--microbatches")
    has_backward = bool(chunks[0].backward)
    orders = [device_order(plan, s, has_backward) for s in range(p)]
    base: dict[tuple[int, int, str, int], int] = {}  # (actor, chunk, kind, micro-batch) -> id
    next_id = 0
    for a, (_, s) in enumerate(actors):
        for k, kind, m in orders[s]:
            base[(a, k, kind, m)] = next_id
            next_id += len(_chunk_ops(lists[k], kind, m, M))
    insts: list[Inst] = []
    for a, (rank, s) in enumerate(actors):
        for k, kind, m in orders[s]:
            ops = _chunk_ops(lists[k], kind, m, M)
            variant = "B_last" if kind == "B" and m == M - 1 else kind
            bases = {dk: base.get((a, k, dk, 0 if dk == "S" else (M - 1 if kind == "S" else m)))
                     for dk in ("F", "B", "S")}
            for op, rel in zip(ops, lists[k]["rel"][variant], strict=True):
                deps = [bases[dk] + pos for dk, pos in rel]
                if _direction(op) == "recv":
                    deps.append(_matching_send(op, kind, m, M, a, k, base, lists, p, peer))
                stream = P2P_STREAM if _direction(op) == "send" else op.stream
                insts.append(Inst(len(insts), tuple(deps), rank, stream, op, m))
    return Program(insts, tuple(lists[k]["all"] for k in range(len(chunks))), M)


def _variants(stage: StageProgram) -> dict:
    """The stage's op lists: backward without last-micro-batch-only ops for earlier micro-batches,
    and where each op id lives (which list, its position in each variant)."""
    backward_early = tuple(op for op in stage.backward if not op.attrs.get("last_microbatch"))
    where: dict[int, str] = {}
    for kind, ops in (("F", stage.forward), ("B", stage.backward), ("S", stage.step)):
        for op in ops:
            if op.id in where:
                raise InputError(f"op id {op.id} appears twice in stage {stage.stage}",
                                 field="stages")
            where[op.id] = kind
    pos = {op.id: i for i, op in enumerate(stage.forward)}
    pos |= {op.id: i for i, op in enumerate(backward_early)}
    pos |= {op.id: i for i, op in enumerate(stage.step)}
    pos_last = dict(pos) | {op.id: i for i, op in enumerate(stage.backward)}
    rel = {kind: _relative_deps(ops, kind, where, pos, pos_last) for kind, ops in
           (("F", stage.forward), ("B", backward_early), ("B_last", stage.backward),
            ("S", stage.step))}
    return {"rel": rel, "F": stage.forward, "B_early": backward_early, "B": stage.backward,
            "S": stage.step, "where": where, "pos": pos, "pos_last": pos_last,
            "all": (*stage.forward, *stage.backward, *stage.step)}


def _chunk_ops(lists: dict, kind: str, m: int, M: int) -> Sequence[Op]:
    if kind == "B":
        return lists["B"] if m == M - 1 else lists["B_early"]
    return lists[kind]


def _relative_deps(ops: Sequence[Op], kind: str, where: dict, pos: dict,
                   pos_last: dict) -> list[list[tuple[str, int]]]:
    """Per op, its deps as (chunk kind, position in that chunk): a backward op's forward deps
    are in the same micro-batch's forward, a step op's in the last micro-batch (module doc)."""
    table_b = pos_last if kind in ("B_last", "S") else pos
    rel = []
    for op in ops:
        mine = []
        for dep in op.deps:
            dep_kind = where.get(dep)
            if dep_kind is None or (dep_kind == "S" and kind != "S"):
                continue  # another stage's op (its recv stands for it) or a previous step's
            p = (table_b if dep_kind == "B" else pos).get(dep)
            if p is not None:  # None: a last-micro-batch-only op, absent here
                mine.append((dep_kind, p))
        rel.append(mine)
    return rel


def _matching_send(op: Op, kind: str, m: int, M: int, actor: int, k: int, base: dict,
                   lists: list, p: int, peer) -> int:
    """The id of the send that ``op`` (a recv of chunk ``k``) waits for: the neighbouring
    chunk's, on the device that holds it."""
    other = int(op.attrs.get("peer", k - 1 if kind == "F" else k + 1))
    if not 0 <= other < len(lists) or other == k:
        raise InputError(f"recv op {op.id} of stage {k} names peer {other}", field="attrs.peer")
    peer_ops = _chunk_ops(lists[other], kind, m, M)
    sends = [i for i, o in enumerate(peer_ops) if _direction(o) == "send"
             and int(o.attrs.get("peer", k)) == k]
    if not sends:
        raise InputError(f"stage {other} has no send to stage {k} for recv op {op.id}",
                         field="attrs.peer")
    return base[(peer(actor, other % p), other, kind, m)] + sends[0]


def _direction(op: Op) -> str | None:
    return op.attrs.get("direction") if op.category == "send_recv" else None
