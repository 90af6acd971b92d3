"""Which bytes of a GPU op are still in the last-level cache when it runs (producer -> consumer).

A memory-bound kernel usually reads what the kernel before it just wrote: a norm reads the
residual add's output, SiLU-and-mul the up-projection's. NVIDIA's L2 is a write-back cache, so
those bytes are still there when the consumer starts, unless too much other data passed through
the cache in between. The model is LRU's stack distance (Mattson, Gecsei, Slutz, Traiger,
"Evaluation techniques for storage hierarchies", IBM Systems Journal 9(2), 1970): an input
written by producer j is an L2 hit for consumer i when the bytes touched from j's write to i's
read -- j's output plus the bytes of every op in between, in program order -- fit in the L2:

    hit_i = min(bytes_read_i, sum of bytes_written_j over producers j (deps, through views)
                               with written_j + touched(j+1 .. i-1) <= L2 capacity)

Everything else the op moves (its other inputs, and its outputs, which the write-back cache
later drains to DRAM) streams from the level that holds the step's working set: the bytes one
pass of the trace touches, which for any real model is DRAM. :func:`l2_reuse` returns both per
op; the memory-bound sub-model (:func:`~sim.cost.vector.stream_op_times`) streams the hits at the
L2's bandwidth and the rest from that level, and a kernel that reads nothing else (its writes
are absorbed by the write-back L2) waits on L2's latency rather than DRAM's. GEMMs and attention
keep their own residency model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sim.hardware import HardwareSpec
from sim.trace import Op

__all__ = ["Reuse", "l2_reuse"]

_VIEW_DEPTH = 8  # views chained between a producer and its consumer that are followed


@dataclass(frozen=True)
class Reuse:
    """Per op id: bytes read from L2 (``hits``); ``working_set_bytes``: what one pass of the
    trace touches, the reuse distance of every other byte."""

    hits: dict[int, float]
    working_set_bytes: float

    def of(self, op: Op) -> tuple[float, float]:
        """(L2-hit bytes, working set) for ``op``."""
        return self.hits.get(op.id, 0.0), self.working_set_bytes


def l2_reuse(ops: Sequence[Op], spec: HardwareSpec) -> Reuse:
    """The L2 hits of every op of ``ops`` (program order) on GPU ``spec`` (module doc)."""
    levels = spec.memory
    if len(levels) < 2:
        return Reuse({}, 0.0)
    capacity = levels[-2].capacity_bytes
    position = {op.id: i for i, op in enumerate(ops)}
    touched = [0.0]  # touched[i]: bytes of ops[0 .. i-1]
    for op in ops:
        touched.append(touched[-1] + op.bytes_total)
    hits: dict[int, float] = {}
    for i, op in enumerate(ops):
        if not op.deps or op.bytes_read <= 0 or op.category == "view":
            continue
        hit = 0.0
        for j in _producers(ops, position, op.deps):
            written = ops[j].bytes_written
            if written > 0 and written + touched[i] - touched[j + 1] <= capacity:
                hit += written
        if hit > 0:
            hits[op.id] = min(hit, op.bytes_read)
    return Reuse(hits, touched[-1])


def _producers(ops: Sequence[Op], position: dict[int, int], deps: tuple[int, ...]) -> set[int]:
    """Positions of the ops that wrote what ``deps`` hand over, looking through views (a view
    writes nothing: its consumer reads its producer's bytes)."""
    found: set[int] = set()
    frontier, depth = list(deps), 0
    while frontier and depth < _VIEW_DEPTH:
        next_frontier = []
        for d in frontier:
            j = position.get(d)
            if j is None:
                continue
            if ops[j].bytes_written > 0:
                found.add(j)
            elif ops[j].category == "view":
                next_frontier.extend(ops[j].deps)
        frontier, depth = next_frontier, depth + 1
    return found
