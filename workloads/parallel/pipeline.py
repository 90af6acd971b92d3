"""Pipeline parallelism: the layers cut into p contiguous stages of L/p layers each.

Legend: p pipeline stages, L layers, b batch, s sequence, h hidden.

Ops before the first layer (embedding, position and mask set-up) go to stage 0, ops after the last
layer (final norm, LM head, loss) to stage p - 1, ops between layers without a layer of their own
to the stage of the op before them. Backward and optimizer ops go to the stage of their module
(ops with no module: by position, as in forward). A dependency that crosses stages is cut: the
stage's first forward op is a ``recv`` of the activation from stage - 1 (the b*s*h hidden state:
the output of the last op of stage - 1 that a later stage reads), read by every op that read an
earlier stage; its last forward op a ``send`` to stage + 1. Backward mirrors it: a ``recv`` of the
output gradient from stage + 1 first, a ``send`` of the input gradient to stage - 1 last. Set-up
values that later stages also read (RoPE tables, masks) are not sent: Megatron-LM recomputes them
on each stage, and they are small.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sim.errors import InputError
from sim.timeline import layer_of
from sim.trace import Op, TensorMeta

__all__ = ["StageOps", "split_stages", "num_layers"]


@dataclass
class StageOps:
    """One stage's forward, backward and optimizer ops (before any later transform)."""

    forward: list[Op]
    backward: list[Op]
    step: list[Op]


def num_layers(ops: Sequence[Op]) -> int:
    """Layers in the trace: one more than the highest layer index of a module path."""
    return max((layer_of(op.module) for op in ops), default=-1) + 1


def _positional(ops: Sequence[Op], p: int, known: dict[str, int], first_stage: int,
                last_stage: int, per_stage: int) -> list[int]:
    layers = [layer_of(op.module) for op in ops]
    layered = [i for i, layer in enumerate(layers) if layer >= 0]
    first, last = (layered[0], layered[-1]) if layered else (len(ops), len(ops))
    stages: list[int] = []
    current = first_stage
    for i, op in enumerate(ops):
        if layers[i] >= 0:
            current = layers[i] // per_stage
        elif op.module and op.module in known:
            stages.append(known[op.module])
            continue
        elif i < first:
            current = first_stage
        elif i > last:
            current = last_stage
        stages.append(current)
    return stages


def assign_stages(forward: Sequence[Op], backward: Sequence[Op], step: Sequence[Op],
                  p: int) -> tuple[list[int], list[int], list[int]]:
    """The stage of every op of the three lists."""
    layers = num_layers(forward)
    if p > 1 and layers == 0:
        raise InputError(f"{p} stages, but the trace has no layers to split", field="--pp")
    if layers % p:
        raise InputError(f"{p} does not divide the {layers} layers", field="--pp")
    per_stage = max(layers // p, 1)
    fwd = _positional(forward, p, {}, 0, p - 1, per_stage)
    known: dict[str, int] = {}
    for op, stage in zip(forward, fwd, strict=True):
        if op.module:
            known.setdefault(op.module, stage)
    bwd = _positional(backward, p, known, p - 1, 0, per_stage)
    opt = [layer_of(op.module) // per_stage if layer_of(op.module) >= 0
           else known.get(op.module, known.get(str(op.attrs.get("param", "")).rsplit(".", 1)[0],
                                               0))
           for op in step]
    return fwd, bwd, opt


def split_stages(forward: Sequence[Op], backward: Sequence[Op], step: Sequence[Op], p: int,
                 next_id: Callable[[], int]) -> list[StageOps]:
    """The ops of each of ``p`` stages, cross-stage deps replaced by send / recv ops."""
    fwd_stage, bwd_stage, opt_stage = assign_stages(forward, backward, step, p)
    stage_of = {op.id: s for op, s in zip(forward, fwd_stage, strict=True)}
    stage_of.update({op.id: s for op, s in zip(backward, bwd_stage, strict=True)})
    stages = [StageOps([], [], []) for _ in range(p)]
    fwd_recv = _link(forward, fwd_stage, stage_of, stages, "forward", next_id, p)
    if backward:  # inference traces have no backward to link
        _link(backward, bwd_stage, stage_of, stages, "backward", next_id, p, fwd_recv)
    for op, s in zip(step, opt_stage, strict=True):
        stages[s].step.append(op)
    for stage in stages:
        ids = {op.id for op in stage.step}
        stage.step = [_with_deps(op, tuple(d for d in op.deps if d in ids)) for op in stage.step]
    return stages


def _with_deps(op: Op, deps: tuple[int, ...]) -> Op:
    return op if deps == op.deps else dataclasses.replace(op, deps=deps)


def _link(ops: Sequence[Op], where: Sequence[int], stage_of: dict[int, int],
          stages: list[StageOps], phase: str, next_id: Callable[[], int], p: int,
          fwd_recv: dict[int, int] | None = None) -> dict[int, int]:
    """Fill one phase's lists; returns stage -> id of its recv op."""
    forward = phase == "forward"
    upstream = (lambda s: s - 1) if forward else (lambda s: s + 1)
    has_up = (lambda s: s > 0) if forward else (lambda s: s < p - 1)
    has_down = (lambda s: s < p - 1) if forward else (lambda s: s > 0)
    own = {op.id: i for i, op in enumerate(ops)}
    # producers a downstream stage reads: stage -> ids, in program order
    crossing: list[set[int]] = [set() for _ in range(p)]
    for op, s in zip(ops, where, strict=True):
        for dep in op.deps:
            if dep in own and stage_of[dep] != s:
                crossing[stage_of[dep]].add(dep)
    sent = [sorted(ids, key=own.__getitem__) for ids in crossing]
    nbytes = [_message(ops[own[ids[-1]]]) if ids else (0.0, None) for ids in sent]
    recv_ids = {s: next_id() for s in range(p) if has_up(s)}
    lists: list[list[Op]] = [[] for _ in range(p)]
    for s, recv_id in recv_ids.items():
        size, meta = nbytes[upstream(s)]
        lists[s].append(_p2p(recv_id, "recv", upstream(s), size, meta, phase, ()))
    for op, s in zip(ops, where, strict=True):
        deps: list[int] = []
        for dep in op.deps:
            if dep in own:
                deps.append(dep if stage_of[dep] == s else recv_ids.get(s, -1))
            elif fwd_recv is not None and stage_of.get(dep, s) != s:  # an activation of
                deps.append(fwd_recv.get(s, -1))  # another stage came in with the forward recv
            else:
                deps.append(dep)
        lists[s].append(_with_deps(op, tuple(dict.fromkeys(d for d in deps if d >= 0))))
    for s in range(p):
        if has_down(s):
            size, meta = nbytes[s]
            down = s + 1 if forward else s - 1
            lists[s].append(_p2p(next_id(), "send", down, size, meta, phase, tuple(sent[s])))
        if forward:
            stages[s].forward = lists[s]
        else:
            stages[s].backward = lists[s]
    return recv_ids


def _message(last: Op) -> tuple[float, TensorMeta | None]:
    """Bytes (and tensor) crossing: the output of the last producer in program order."""
    if last.outputs:
        return float(last.outputs[0].nbytes), last.outputs[0]
    return float(last.bytes_written), None


def _p2p(op_id: int, direction: str, peer: int, nbytes: float, meta: TensorMeta | None, phase: str,
         deps: tuple[int, ...]) -> Op:
    tensors = (meta,) if meta is not None else ()
    return Op(id=op_id, name=f"nccl:{direction}", category="send_recv", deps=deps,
              phase=phase, stream=0, dtype=meta.dtype if meta is not None else "fp32",
              inputs=tensors if direction == "send" else (),
              outputs=tensors if direction == "recv" else (),
              attrs={"direction": direction, "peer": peer, "bytes": nbytes})
