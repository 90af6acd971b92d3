"""The simulator: the only part of tksim that owns time. It executes a trace on a device with SimPy.

Actors (SimPy processes), per rank:

- a **host thread** issues the rank's ops in program order. For each op it spends t_pre
  (dispatch, launch), then hands the op to its device stream. On a GPU the host then moves on at
  once (the device is asynchronous), unless the op synchronizes (``op.sync``); on a CPU the device
  *is* the host's cores, so the host waits for every op to finish.
- one **device stream** per stream id executes its ops in issue order (CUDA stream semantics). An
  op starts when it has been issued, the previous op on its stream has ended, and every op it
  depends on has ended; it then occupies the stream for t_calc + t_post.
- on a CPU device the host and the device are the same cores: a single actor per rank issues each
  op and runs it to its end (t_pre, then t_calc + t_post) before the next.

Lifecycle of an op: *issued* (host finished t_pre) -> *started* (stream free, deps done) ->
*ended*. Events are created lazily, only when an actor must wait, so a device-bound trace costs
about two SimPy events per op.

Everything is deterministic: one process per actor, ops in program order, no randomness.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import simpy

from sim.cost import CalibratedCostModel, CostModel, MeasuredCostModel, OpCost, cost_ops
from sim.critical_path import critical_path
from sim.errors import InputError
from sim.fusion import fuse_elementwise
from sim.hardware import HardwareSpec
from sim.result import SimResult
from sim.retarget import cuda_graph_costs, foreach_optimizer, paged_kv_cache
from sim.timeline import build_records
from sim.trace import Op, Trace

__all__ = ["simulate", "Timeline"]


class Timeline:
    """Times recorded while simulating (seconds), indexed by op position in program order."""

    def __init__(self, n: int):
        self.host_start = [0.0] * n
        self.issue = [-1.0] * n
        self.start = [0.0] * n
        self.end = [-1.0] * n
        self.waited_for = ["start"] * n
        self.host_waited_on = [-1] * n  # op whose end the host waited for before this op, or -1
        self.prev_on_stream = [-1] * n
        self.binding_dep = [-1] * n


class _Engine:
    """One simulation run: the SimPy environment, the ops, their costs and the timeline."""

    def __init__(self, ops: Sequence[Op], costs: Sequence[OpCost], synchronous: bool,
                 index: Mapping[int, int] | None = None):
        self.env = simpy.Environment()
        self.ops = ops
        self.t_pre = [c.t_pre_s for c in costs]
        self.t_dev = [c.t_calc_s + c.t_post_s for c in costs]
        self.synchronous = synchronous
        self.index = {op.id: i for i, op in enumerate(ops)} if index is None else index
        self.timeline = Timeline(len(ops))
        self._done_waiters: dict[int, simpy.Event] = {}
        self._issue_waiters: dict[int, simpy.Event] = {}

    def run(self) -> Timeline:
        by_rank: dict[int, list[int]] = defaultdict(list)
        by_stream: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, op in enumerate(self.ops):
            by_rank[op.rank].append(i)
            by_stream[(op.rank, op.stream)].append(i)
        if self.synchronous:  # the host's cores are the device: one actor per rank
            for rank in sorted(by_rank):
                self.env.process(self._synchronous_host(by_rank[rank]))
        else:
            for rank in sorted(by_rank):
                self.env.process(self._host(by_rank[rank]))
            for key in sorted(by_stream):
                self.env.process(self._stream(by_stream[key]))
        self.env.run()
        return self.timeline

    def _synchronous_host(self, order: list[int]):
        """A CPU device: the host issues each op and runs it to the end before the next, so an
        op starts the moment it is issued (every earlier op of the rank has ended)."""
        tl, env = self.timeline, self.env
        waited_on, previous = -1, {}
        for i in order:
            for dep in self.ops[i].deps:  # only ops of other ranks can still be running
                j = self.index[dep]
                if tl.end[j] < 0.0:
                    yield self._wait_done(j)
                    waited_on = j
            tl.host_start[i] = env.now
            tl.host_waited_on[i], waited_on = waited_on, -1
            tl.issue[i] = tl.start[i] = env.now + self.t_pre[i]
            stream = self.ops[i].stream
            tl.prev_on_stream[i] = previous.get(stream, -1)
            self._explain_start(i, tl.prev_on_stream[i])
            if self.t_pre[i] + self.t_dev[i] > 0.0:
                yield env.timeout(self.t_pre[i] + self.t_dev[i])
            tl.end[i] = env.now
            waiter = self._done_waiters.pop(i, None)
            if waiter is not None:
                waiter.succeed()
            previous[stream] = i
            if tl.end[i] > tl.issue[i]:
                waited_on = i  # the host was busy running op i until it ended

    # -- actors ----------------------------------------------------------------------------
    def _host(self, order: list[int]):
        """Issue ops in program order. Between synchronizations the host's times are a running
        sum of t_pre, so it computes them ahead and sleeps only when it must wait for the device."""
        tl = self.timeline
        t, waited_on = self.env.now, -1
        for i in order:
            tl.host_start[i] = t
            tl.host_waited_on[i], waited_on = waited_on, -1
            t += self.t_pre[i]
            tl.issue[i] = t
            waiter = self._issue_waiters.pop(i, None)
            if waiter is not None:
                waiter.succeed()
            if self.synchronous or self.ops[i].sync:
                if tl.end[i] < 0.0:
                    yield self._wait_done(i)
                if tl.end[i] > t:
                    t, waited_on = tl.end[i], i  # the host sat idle until op i ended

    def _stream(self, order: list[int]):
        """Execute ops in issue order, each once issued and once its dependencies have ended."""
        tl, env = self.timeline, self.env
        previous = -1
        for i in order:
            if tl.issue[i] < 0.0:
                waiter = self._issue_waiters[i] = env.event()
                yield waiter
            for dep in self.ops[i].deps:
                j = self.index[dep]
                if tl.end[j] < 0.0:
                    yield self._wait_done(j)
            start = tl.start[i] = max(env.now, tl.issue[i])  # nothing else can delay it now
            tl.prev_on_stream[i] = previous
            self._explain_start(i, previous)
            delay = (start - env.now) + self.t_dev[i]
            if delay > 0.0:
                yield env.timeout(delay)
            tl.end[i] = env.now
            waiter = self._done_waiters.pop(i, None)
            if waiter is not None:
                waiter.succeed()
            previous = i

    # -- helpers ---------------------------------------------------------------------------
    def _wait_done(self, j: int) -> simpy.Event:
        waiter = self._done_waiters.get(j)
        if waiter is None:
            waiter = self._done_waiters[j] = self.env.event()
        return waiter

    def _explain_start(self, i: int, previous: int) -> None:
        """Record which constraint set op i's start: host issue, stream order, or a dep."""
        tl = self.timeline
        start = tl.start[i]
        if previous >= 0 and tl.end[previous] == start and start > 0.0:
            tl.waited_for[i] = "stream"
            return
        for dep in self.ops[i].deps:
            j = self.index[dep]
            if tl.end[j] == start and start > 0.0:
                tl.waited_for[i], tl.binding_dep[i] = "dep", j
                return
        tl.waited_for[i] = "host" if tl.issue[i] == start and start > 0.0 else "start"


def simulate(
    trace: Trace,
    spec: HardwareSpec,
    *,
    cost_model: CostModel | None = None,
    costs: Sequence[OpCost] | None = None,
    retarget: bool = True,
    kv_cache: str = "trace",
    fuse: bool = False,
    cuda_graphs: bool = False,
) -> SimResult:
    """Run ``trace`` on ``spec``: cost every op (or use ``costs``; the default model is
    :class:`sim.cost.CalibratedCostModel`), simulate, find the critical path, and return per-op
    records with the makespan T (see :class:`sim.result.SimResult`).

    With ``retarget`` (and no given ``costs``), a trace is first mapped to the kernels the target
    would run (:mod:`sim.retarget`: per-parameter optimizer ops become foreach groups on a GPU).
    ``kv_cache="paged"`` re-costs the decode KV-cache appends as a paged cache would (a what-if:
    the captured HF cache copies the whole cache every step). ``fuse`` runs chains of
    elementwise and reduction ops as single kernels (:mod:`sim.fusion`: fused kernels,
    ``torch.compile``). ``cuda_graphs`` replays the trace as CUDA graphs: one launch instead of
    a dispatch per op (:func:`sim.retarget.cuda_graph_costs`).
    """
    if kv_cache not in ("trace", "paged"):
        raise InputError(f"unknown KV cache {kv_cache!r}; one of trace, paged", field="--kv-cache")
    if kv_cache == "paged":
        trace = paged_kv_cache(trace)
    if fuse and costs is None:
        trace = fuse_elementwise(trace)
    model = cost_model or CalibratedCostModel()
    if retarget and costs is None and spec.asynchronous and not isinstance(
            model, MeasuredCostModel):
        trace = foreach_optimizer(trace)
    if costs is None:
        costs = cost_ops(trace.ops, spec, model)
    if cuda_graphs:
        if not spec.asynchronous:
            raise InputError(f"{spec.name} is not a GPU: CUDA graphs need one",
                             field="--cuda-graphs")
        costs = cuda_graph_costs(trace.ops, costs, spec.host.launch_s)
    timeline = _Engine(trace.ops, costs, synchronous=not spec.asynchronous).run()
    path = critical_path(trace.ops, costs, timeline)
    records = build_records(trace.ops, costs, timeline, path)
    dtype = _dominant_dtype(trace.ops)
    return SimResult(
        ops=records,
        total_s=path.total_s,
        hw=spec.name,
        hw_kind=spec.kind,
        trace_meta=dict(trace.meta),
        peak_flops_per_s=spec.compute.matrix_peak(dtype),
        peak_bytes_per_s=spec.memory_bandwidth(spec.main_memory),
    )


def _dominant_dtype(ops: Sequence[Op]) -> str:
    flops: dict[str, float] = defaultdict(float)
    for op in ops:
        flops[op.dtype] += op.flops
    return max(sorted(flops), key=flops.get) if flops else "fp32"
