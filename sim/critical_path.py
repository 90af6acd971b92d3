"""The critical path: the chain of host and device segments whose lengths add up to T exactly.

Walking back from the op that ends last, each segment is either an op's device interval
(t_calc + t_post, on its stream) or an op's host interval (t_pre). A device interval began when
its binding constraint was met (recorded by the simulator as ``waited_for``):

- ``stream``: the previous op on the same stream ended  -> that op's device interval,
- ``dep``:    an op it depends on ended                  -> that op's device interval,
- ``host``:   the host issued it                         -> this op's host interval,
- ``peer``:   a collective's last member became ready       -> that member's own reason,
- ``start``:  time zero.

A host interval began when the host finished issuing its previous op, or, if the host had to wait
for a synchronizing op, when that op ended. Neither actor is ever idle without a cause, so the
segments tile [0, T] and their sum is T: the decomposition T = sum of the t_pre, t_calc and t_post
terms on the path is exact, not an estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sim.cost import OpCost
from sim.trace import Op

if TYPE_CHECKING:
    from sim.simulator import Timeline

__all__ = ["CriticalPath", "critical_path"]


@dataclass(frozen=True)
class CriticalPath:
    """Per op, the part of T that is its t_pre, t_calc and t_post (0 when off the path)."""

    total_s: float
    pre_s: list[float]
    calc_s: list[float]
    post_s: list[float]


def critical_path(ops: Sequence[Op], costs: Sequence[OpCost], tl: Timeline) -> CriticalPath:
    n = len(ops)
    pre, calc, post = [0.0] * n, [0.0] * n, [0.0] * n
    if n == 0:
        return CriticalPath(0.0, pre, calc, post)
    last = max(range(n), key=lambda i: (max(tl.end[i], tl.issue[i]), i))
    total = max(tl.end[last], tl.issue[last])
    previous_host = _previous_on_host(ops)
    node: tuple[str, int] | None = ("device", last) if tl.end[last] >= tl.issue[last] else (
        "host", last)
    while node is not None:
        where, i = node
        if where == "device":
            calc[i], post[i] = costs[i].t_calc_s, costs[i].t_post_s
            node = _device_predecessor(tl, i)
        else:
            pre[i] = costs[i].t_pre_s
            node = _host_predecessor(tl, i, previous_host[i])
    return CriticalPath(total, pre, calc, post)


def _device_predecessor(tl: Timeline, i: int) -> tuple[str, int] | None:
    reason = tl.waited_for[i]
    if reason == "stream":
        return ("device", tl.prev_on_stream[i])
    if reason == "dep":
        return ("device", tl.binding_dep[i])
    if reason == "peer":  # a collective that waited for its last member: that member's reason
        return _device_predecessor(tl, tl.binding_dep[i])
    if reason == "host":
        return ("host", i)
    return None


def _host_predecessor(tl: Timeline, i: int, previous: int) -> tuple[str, int] | None:
    if tl.host_waited_on[i] >= 0:
        return ("device", tl.host_waited_on[i])
    if previous < 0 or tl.host_start[i] == 0.0:
        return None
    return ("host", previous)


def _previous_on_host(ops: Sequence[Op]) -> list[int]:
    """For each op, the op its rank's host issued just before it (-1 for the first)."""
    last_by_rank: dict[int, int] = {}
    previous = [-1] * len(ops)
    for i, op in enumerate(ops):
        previous[i] = last_by_rank.get(op.rank, -1)
        last_by_rank[op.rank] = i
    return previous
