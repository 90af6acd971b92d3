"""Kernel fusion: chains of elementwise and reduction ops run as one kernel.

An eager PyTorch trace launches one kernel per op: HF's RMSNorm is six kernels (pow, mean, add,
rsqrt, mul, mul), an attention softmax with dropout six more, and each reads its input from and
writes its output to device memory. Fused kernels do the chain in one pass: Megatron-LM's fused
scale-mask-softmax, bias-GeLU and bias-dropout-add (Narayanan et al., SC'21, sec. 4.2,
"Computation optimizations"), Apex / Transformer Engine norms, and TorchInductor's generated
kernels (``torch.compile``: pointwise and reduction ops fused, intermediates kept in registers).

:func:`fuse_elementwise` rewrites a trace that way. A **chain** is a run of consecutive ops (in
program order) of category elementwise, reduction or norm, in the same module, phase and stream,
each after the first reading the output of an earlier member; ops that launch no kernel (views,
allocations) may sit in between. A chain of two or more becomes one op with

    flops         = the members' sum
    bytes_read    = the members' reads minus what they read from each other (once per edge)
    bytes_written = the outputs that something outside the chain reads (or the last output),
    outputs       = those tensors (what stays in memory, e.g. for backward),

so intermediates that stay inside the chain cost nothing, while tensors saved for backward are
still written. Ops between members that read a member's output move after the fused op.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

from sim.trace import Op, Trace

__all__ = ["fuse_elementwise", "FUSIBLE"]

FUSIBLE = ("elementwise", "reduction", "norm")
_NO_KERNEL = ("view", "other")


def fuse_elementwise(trace: Trace) -> Trace:
    """The trace with chains of elementwise / reduction ops fused (see module doc)."""
    users = _users(trace.ops)
    out: list[Op] = []
    chain: list[Op] = []
    between: list[Op] = []
    alias: dict[int, int] = {}  # fused member id -> the fused op's id (its last member's)
    fused_any = False
    for op in trace.ops:
        if any(d in alias for d in op.deps):
            op = replace(op, deps=tuple(dict.fromkeys(alias.get(d, d) for d in op.deps)))
        if chain and _extends(chain, between, op):
            chain.append(op)
            continue
        if chain and op.category in _NO_KERNEL and not op.sync:
            between.append(op)
            continue
        fused_any |= _flush(chain, between, users, out, alias)
        if any(d in alias for d in op.deps):  # it may read the chain just fused
            op = replace(op, deps=tuple(dict.fromkeys(alias.get(d, d) for d in op.deps)))
        chain, between = ([op], []) if _fusible(op) else ([], [])
        if not chain:
            out.append(op)
    fused_any |= _flush(chain, between, users, out, alias)
    if not fused_any:
        return trace
    return Trace(ops=tuple(out), meta={**trace.meta, "fused": "elementwise chains"})


def _fusible(op: Op) -> bool:
    return (op.category in FUSIBLE and not op.sync and op.phase != "optimizer"
            and not op.attrs.get("host_scalar"))


def _extends(chain: list[Op], between: list[Op], op: Op) -> bool:
    first = chain[0]
    if not _fusible(op) or (op.module, op.phase, op.stream) != (first.module, first.phase,
                                                                  first.stream):
        return False
    members = {m.id for m in chain}
    moved = _moved_ids(members, between)
    return any(d in members for d in op.deps) and not any(d in moved for d in op.deps)


def _moved_ids(members: set[int], between: Sequence[Op]) -> set[int]:
    """Ops between members that (transitively) read a member: they must follow the fused op."""
    moved: set[int] = set()
    for op in between:
        if any(d in members or d in moved for d in op.deps):
            moved.add(op.id)
    return moved


def _flush(chain: list[Op], between: list[Op], users: dict[int, set[int]],
           out: list[Op], alias: dict[int, int]) -> bool:
    if len(chain) < 2:
        out.extend(chain)
        out.extend(between)
        return False
    members = {m.id for m in chain}
    moved = _moved_ids(members, between)
    out.extend(op for op in between if op.id not in moved)
    out.append(_fused_op(chain, members, users))
    last = chain[-1].id
    out.extend(replace(op, deps=_remap(op.deps, members, last)) for op in between
               if op.id in moved)
    alias.update((m, last) for m in members if m != last)
    return True


def _fused_op(chain: list[Op], members: set[int], users: dict[int, set[int]]) -> Op:
    written = {m.id: m.bytes_written for m in chain}
    internal = sum(written[d] for m in chain for d in set(m.deps) if d in members)
    bytes_read = max(0.0, sum(m.bytes_read for m in chain) - internal)
    last = chain[-1]
    kept_members = [m for m in chain if m is last or users.get(m.id, set()) - members]
    kept = sum(m.bytes_written for m in kept_members)
    external_deps = tuple(dict.fromkeys(d for m in chain for d in m.deps if d not in members))
    category = next((m.category for m in chain if m.category != "elementwise"), "elementwise")
    names = [m.name.removeprefix("aten::") for m in chain]
    return replace(
        last, name="fused:" + "+".join(names), category=category,
        flops=sum(m.flops for m in chain), bytes_read=bytes_read, bytes_written=kept,
        deps=external_deps, inputs=chain[0].inputs, num_kernels=1,
        outputs=tuple(t for m in kept_members for t in m.outputs),
        measured_s=None if any(m.measured_s is None for m in chain) else
        sum(m.measured_s for m in chain),
        measured_host_s=chain[0].measured_host_s,  # one kernel: no host time between its parts
        warm_host_s=chain[0].warm_host_s,
        attrs={"fused": names, "fused_ids": [m.id for m in chain]})


def _remap(deps: tuple[int, ...], members: set[int], fused_id: int) -> tuple[int, ...]:
    return tuple(dict.fromkeys(fused_id if d in members else d for d in deps))


def _users(ops: Sequence[Op]) -> dict[int, set[int]]:
    users: dict[int, set[int]] = defaultdict(set)
    for op in ops:
        for d in op.deps:
            users[d].add(op.id)
    return users
