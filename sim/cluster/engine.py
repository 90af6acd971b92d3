"""The cluster engine: the single-device actors, plus communication on shared links.

Per representative rank the actors are those of :mod:`sim.simulator` (a host thread issuing in
program order, in-order device streams: 0 compute, 1 data-parallel communication, 2 pipeline
sends), and cross-rank dependencies are waits on another rank's op (a ``recv`` waits for the
matching ``send``). A communication op, once started on its stream, spends its plan's latency and
then moves its flows through the :class:`~sim.cluster.links.FluidNetwork`, where it shares each
port with whatever else is in flight there; it ends when its last flow is done. Its device time
is therefore only known after the run: :meth:`ClusterEngine.device_time` reports it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sim.cluster.comm import CommPlan
from sim.cluster.links import FluidNetwork
from sim.cluster.program import Inst
from sim.cost import OpCost
from sim.simulator import _Engine

__all__ = ["ClusterEngine"]


class _Identity:
    """Instance ids are positions: the id -> position map is the identity (no 1M-entry dict)."""

    def __getitem__(self, key: int) -> int:
        return key


class ClusterEngine(_Engine):
    """Runs expanded instances; ``comm[i]`` is the plan of communication instance i."""

    def __init__(self, insts: Sequence[Inst], costs: Sequence[OpCost],
                 comm: dict[int, CommPlan]):
        super().__init__(insts, costs, synchronous=False, index={})
        self.index = _Identity()
        self.comm = comm
        self.network = FluidNetwork(self.env)

    def device_time(self, i: int) -> float:
        return self.timeline.end[i] - self.timeline.start[i]

    def _stream(self, order: list[int]):
        """As the single-device stream, but a communication op's duration comes from the
        network (its latency, then its flows) instead of a fixed t_calc."""
        tl, env, comm = self.timeline, self.env, self.comm
        previous = -1
        for i in order:
            if tl.issue[i] < 0.0:
                waiter = self._issue_waiters[i] = env.event()
                yield waiter
            for j in self.ops[i].deps:
                if tl.end[j] < 0.0:
                    yield self._wait_done(j)
            start = tl.start[i] = max(env.now, tl.issue[i])
            tl.prev_on_stream[i] = previous
            self._explain_start(i, previous)
            plan = comm.get(i)
            if plan is None:
                delay = (start - env.now) + self.t_dev[i]
                if delay > 0.0:
                    yield env.timeout(delay)
            else:
                delay = (start - env.now) + plan.latency_s
                if delay > 0.0:
                    yield env.timeout(delay)
                if plan.flows:
                    yield self.network.transfer(plan.flows)
            tl.end[i] = env.now
            waiter = self._done_waiters.pop(i, None)
            if waiter is not None:
                waiter.succeed()
            previous = i
