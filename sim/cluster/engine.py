"""The cluster engine: the single-device actors, plus communication on shared links.

Per simulated rank the actors are those of :mod:`sim.simulator` (a host thread issuing in program
order, in-order device streams: 0 compute, 1 data-parallel communication, 2 pipeline sends), and
cross-rank dependencies are waits on another rank's op (a ``recv`` waits for the matching
``send``). With every rank simulated (no symmetry reduction) a collective is also a rendezvous:
it starts when the last member of its group is ready. A communication op, once started on its
stream, spends its plan's latency and then moves its flows through the
:class:`~sim.cluster.links.FluidNetwork`, where it shares each port with whatever else is in
flight there; it ends when its last flow is done. Its device time is therefore only known after
the run: :meth:`ClusterEngine.device_time` reports it.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

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
                 comm: dict[int, CommPlan],
                 rendezvous: dict[int, tuple[Hashable, int]] | None = None):
        super().__init__(insts, costs, synchronous=False, index=_Identity())
        self.comm = comm
        self.network = FluidNetwork(self.env)
        self.rendezvous = rendezvous or {}
        self._barriers: dict[Hashable, _Barrier] = {}

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
            elif i in self.rendezvous:  # every rank of the group, explicitly
                yield from self._collective(i, plan)
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

    def _collective(self, i: int, plan: CommPlan):
        """A collective with all its ranks simulated: it starts when the last member is ready
        (the others record that member as what they waited for) and ends for all when the last
        member's flows are done."""
        tl, env = self.timeline, self.env
        if tl.start[i] > env.now:
            yield env.timeout(tl.start[i] - env.now)
        key, n = self.rendezvous[i]
        barrier = self._barriers.setdefault(key, _Barrier(env))
        barrier.arrived.append(i)
        if len(barrier.arrived) < n:
            yield barrier.started
        else:
            for k in barrier.arrived[:-1]:
                tl.start[k] = env.now
                tl.waited_for[k], tl.binding_dep[k] = "peer", i
            barrier.started.succeed()
        if plan.latency_s > 0.0:
            yield env.timeout(plan.latency_s)
        if plan.flows:
            yield self.network.transfer(plan.flows)
        barrier.done += 1
        if barrier.done < n:
            yield barrier.ended
        else:
            barrier.ended.succeed()
            del self._barriers[key]


class _Barrier:
    """Members of one collective instance: who has arrived, and its start and end events."""

    __slots__ = ("arrived", "started", "ended", "done")

    def __init__(self, env):
        self.arrived: list[int] = []
        self.started, self.ended = env.event(), env.event()
        self.done = 0
