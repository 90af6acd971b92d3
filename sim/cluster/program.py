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

__all__ = ["Inst", "Program", "expand", "chunk_order", "P2P_STREAM", "MAX_INSTANCES"]

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
    rank's issue order; ``stage_ops[s]`` lists the template ops of stage s (for costing)."""

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


def expand(workload: ParallelWorkload,
           actors: Sequence[tuple[int, int]] | None = None,
           peer: Callable[[int, int], int] | None = None) -> Program:
    """Number and link every instance of every actor (module doc).

    ``actors`` lists (rank, stage) of the ranks to simulate, default one per stage (rank =
    stage index, the representatives); ``peer(actor, stage)`` is the index of the actor that a
    ``recv`` of ``actor`` from ``stage`` pairs with (default: that stage's actor)."""
    plan, stages = workload.plan, workload.stages
    M, p = plan.microbatches, len(stages)
    actors = list(actors) if actors is not None else [(s, s) for s in range(p)]
    peer = peer or (lambda actor, stage: stage)
    lists = [_variants(st) for st in stages]
    total = sum(M * (len(lists[s]["F"]) + len(lists[s]["B"])) + len(lists[s]["S"])
                for _, s in actors)
    if total > MAX_INSTANCES:  # before anything grows with M
        raise InputError(f"absurd size: {total:,} op instances to simulate (at most "
                         f"{MAX_INSTANCES:,}); use fewer micro-batches or ranks",
                         field="--microbatches")
    orders = [chunk_order(plan.schedule, s, p, M, bool(st.backward)) + [("S", 0)]
              for s, st in enumerate(stages)]
    base: dict[tuple[int, str, int], int] = {}  # (actor, chunk kind, micro-batch) -> first id
    next_id = 0
    for a, (_, s) in enumerate(actors):
        for kind, m in orders[s]:
            base[(a, kind, m)] = next_id
            next_id += len(_chunk_ops(lists[s], kind, m, M))
    insts: list[Inst] = []
    for a, (rank, s) in enumerate(actors):
        for kind, m in orders[s]:
            ops = _chunk_ops(lists[s], kind, m, M)
            variant = "B_last" if kind == "B" and m == M - 1 else kind
            bases = {dk: base.get((a, dk, 0 if dk == "S" else (M - 1 if kind == "S" else m)))
                     for dk in ("F", "B", "S")}
            for op, rel in zip(ops, lists[s]["rel"][variant], strict=True):
                deps = [bases[dk] + pos for dk, pos in rel]
                if _direction(op) == "recv":
                    deps.append(_matching_send(op, kind, m, M, a, s, base, lists, p, peer))
                stream = P2P_STREAM if _direction(op) == "send" else op.stream
                insts.append(Inst(len(insts), tuple(deps), rank, stream, op, m))
    return Program(insts, tuple(lists[s]["all"] for s in range(p)), M)


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


def _matching_send(op: Op, kind: str, m: int, M: int, actor: int, s: int, base: dict,
                   lists: list, p: int, peer) -> int:
    stage = int(op.attrs.get("peer", s - 1 if kind == "F" else s + 1))
    if not 0 <= stage < p or stage == s:
        raise InputError(f"recv op {op.id} of stage {s} names peer {stage}", field="attrs.peer")
    peer_ops = _chunk_ops(lists[stage], kind, m, M)
    sends = [i for i, o in enumerate(peer_ops) if _direction(o) == "send"
             and int(o.attrs.get("peer", s)) == s]
    if not sends:
        raise InputError(f"stage {stage} has no send to stage {s} for recv op {op.id}",
                         field="attrs.peer")
    return base[(peer(actor, stage), kind, m)] + sends[0]


def _direction(op: Op) -> str | None:
    return op.attrs.get("direction") if op.category == "send_recv" else None
