"""Simulate a parallel workload on a system: one representative rank per pipeline stage.

Steps: place ranks (:mod:`sim.cluster.layout`), check memory (:mod:`sim.cluster.memory`), cost
each stage's template ops once on the system's GPU (the single-device cost model) and plan its
communication ops on the topology (:mod:`sim.cluster.comm`), expand the templates over
micro-batches with the pipeline schedule (:mod:`sim.cluster.program`), run the engine
(:mod:`sim.cluster.engine`), then find the critical path and summarize (:mod:`sim.cluster.result`).

Symmetry: ranks of a stage that differ only in their tensor-, data- or expert-parallel index run
the same program at the same times, so the representative's collectives start when it reaches
them (its peers arrive at the same moment) and its ports carry exactly what each peer's ports
carry. The cost of a simulation therefore grows with the pipeline depth and the micro-batches,
not with the data-parallel degree.
"""

from __future__ import annotations

import time

from sim.cluster.comm import CommPlan, collective_options, collective_plan, p2p_plan
from sim.cluster.engine import ClusterEngine
from sim.cluster.layout import Layout
from sim.cluster.memory import check_fits, memory_report
from sim.cluster.program import expand
from sim.cluster.result import ClusterResult, summarize
from sim.cluster.workload import ParallelWorkload
from sim.cost import CalibratedCostModel, CostModel, OpCost, cost_ops
from sim.cost.gpu_params import A100_FIT, GpuParams
from sim.critical_path import critical_path
from sim.errors import InputError
from sim.trace import Op

__all__ = ["simulate_parallel", "RECORDS_LIMIT"]

#: Above this many instances a result keeps summaries only, not one record per op instance.
RECORDS_LIMIT = 300_000
_COMM = ("collective", "send_recv")


def simulate_parallel(workload: ParallelWorkload, system, *, cost_model: CostModel | None = None,
                      params: GpuParams = A100_FIT, allow_oom: bool = False,
                      records: bool | None = None, algo: str | None = None) -> ClusterResult:
    """Run ``workload`` on ``system`` (a :class:`~sim.cluster.system.SystemSpec`) and return
    the makespan of one iteration with its decomposition, per-stage and per-link summaries,
    memory and MFU (:class:`~sim.cluster.result.ClusterResult`)."""
    wall = time.perf_counter()
    layout = Layout(workload.plan, system.num_gpus)
    memory = memory_report(workload, system.device.main_memory.capacity_bytes)
    if not allow_oom:
        check_fits(memory, system.device.name)
    program = expand(workload)
    model = cost_model or CalibratedCostModel()
    template_costs, plans = {}, {}
    for s, ops in enumerate(program.stage_ops):
        costs = cost_ops(ops, system.device, model)
        for op, cost in zip(ops, costs, strict=True):
            if op.category in _COMM:
                plan = _plan(op, s, layout, system, params, algo)
                plans[op.id] = plan
                cost = OpCost(cost.t_pre_s, plan.alone_s, 0.0, "link",
                              {"algorithm": plan.algorithm, **plan.detail})
            template_costs[op.id] = cost
    insts = program.insts
    costs = [template_costs[inst.op.id] for inst in insts]
    comm = {i: plans[inst.op.id] for i, inst in enumerate(insts) if inst.op.id in plans}
    engine = ClusterEngine(insts, costs, comm)
    timeline = engine.run()
    for i in comm:  # contention: a transfer's time is known only now
        c = costs[i]
        costs[i] = OpCost(c.t_pre_s, engine.device_time(i), 0.0, "link", c.detail)
    path = critical_path(insts, costs, timeline)
    keep = records if records is not None else len(insts) <= RECORDS_LIMIT
    return summarize(workload, system, layout, insts, costs, timeline, path, memory,
                     engine.network.usage(), keep_records=keep,
                     wall_s=time.perf_counter() - wall)


def _plan(op: Op, stage: int, layout: Layout, system, params: GpuParams,
          algo: str | None) -> CommPlan:
    attrs, me = op.attrs, layout.representative(stage)
    size = float(attrs.get("bytes", op.bytes_read))
    if op.category == "send_recv":
        direction = attrs.get("direction")
        if direction == "recv":  # waits for the matching send, which carries the bytes
            return CommPlan(0.0, (), "p2p", {"direction": "recv"})
        if direction != "send":
            raise InputError(f"send_recv op {op.id} has direction {direction!r}; "
                             "one of send, recv", field="attrs.direction")
        peer = int(attrs.get("peer", stage + 1))
        return p2p_plan(system, me, layout.representative(peer), size, params)
    kind = attrs.get("collective", attrs.get("kind", "allreduce"))
    gpus = layout.group(str(attrs.get("group", "tp")), stage)
    if algo is None:
        return collective_plan(system, kind, size, gpus, params, rank=me)
    options = [p for p in collective_options(system, kind, size, gpus, params, rank=me)
               if p.algorithm.split("/")[0] == algo or p.algorithm == "none"]
    if not options:
        raise InputError(f"algorithm {algo!r} is not available for {kind} over {len(gpus)} "
                         f"GPUs of {system.name}", field="--algo")
    return min(options, key=lambda p: (p.alone_s, p.algorithm))
