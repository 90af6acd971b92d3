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

from sim.cluster.comm import CommPlan, collective_plan, p2p_plan
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
from sim.retarget import cuda_graph_costs
from sim.trace import Op

__all__ = ["simulate_parallel", "RECORDS_LIMIT"]

#: Above this many instances a result keeps summaries only, not one record per op instance.
RECORDS_LIMIT = 300_000
_COMM = ("collective", "send_recv")


def simulate_parallel(workload: ParallelWorkload, system, *, cost_model: CostModel | None = None,
                      params: GpuParams = A100_FIT, allow_oom: bool = False,
                      records: bool | None = None, algo: str | None = None,
                      symmetric: bool = True, cuda_graphs: bool = False) -> ClusterResult:
    """Run ``workload`` on ``system`` (a :class:`~sim.cluster.system.SystemSpec`) and return
    the makespan of one iteration with its decomposition, per-stage and per-link summaries,
    memory and MFU (:class:`~sim.cluster.result.ClusterResult`).

    ``symmetric=False`` simulates every rank (collectives rendezvous across their groups)
    instead of one representative per stage: the same answer for the symmetric programs the
    transforms produce, at ``tp * dp`` times the cost; a check of the symmetry reduction.
    ``cuda_graphs``: each chunk (a micro-batch's forward or backward, the step) of each stage is
    launched as one CUDA graph (:func:`sim.retarget.cuda_graph_costs`)."""
    wall = time.perf_counter()
    layout = Layout(workload.plan, system.num_gpus)
    memory = memory_report(workload, system.device.main_memory.capacity_bytes)
    if not allow_oom:
        check_fits(memory, system.device.name)
    if symmetric:
        actors = [(layout.representative(s), s) for s in range(workload.plan.pp)]
        program = expand(workload)
    else:
        actors = [(r, layout.coordinates(r)[2]) for r in range(workload.plan.world)]
        program = expand(workload, actors, lambda a, stage: layout.rank(
            *layout.coordinates(actors[a][0])[:2], stage))
    model = cost_model or CalibratedCostModel()
    template_costs = {}
    for ops in program.stage_ops:
        for op, cost in zip(ops, cost_ops(ops, system.device, model), strict=True):
            template_costs[op.id] = cost
    if cuda_graphs:
        for chunk in workload.stages:
            for ops in (chunk.forward, chunk.backward, chunk.step):
                graphed = cuda_graph_costs(ops, [template_costs[op.id] for op in ops],
                                           system.device.host.launch_s)
                template_costs.update((op.id, c) for op, c in zip(ops, graphed, strict=True))
    insts = program.insts
    costs = [template_costs[inst.op.id] for inst in insts]
    plans: dict[tuple, CommPlan] = {}
    comm, rendezvous = {}, {}
    for i, inst in enumerate(insts):
        op = inst.op
        if op.category not in _COMM:
            continue
        rank, stage = actors[inst.rank] if symmetric else (inst.rank, actors[inst.rank][1])
        key = (op.id, rank)
        if key not in plans:
            plans[key] = _plan(op, stage, layout, system, params, algo, rank)
        plan = comm[i] = plans[key]
        c = costs[i]
        costs[i] = OpCost(c.t_pre_s, plan.alone_s, 0.0, "link",
                          {"algorithm": plan.algorithm, **plan.detail})
        if not symmetric and op.category == "collective":
            group = layout.group_of(str(op.attrs.get("group", "tp")), rank)
            if len(group) > 1:
                rendezvous[i] = ((op.id, inst.microbatch, group), len(group))
    engine = ClusterEngine(insts, costs, comm, rendezvous)
    timeline = engine.run()
    for i in comm:  # contention: a transfer's time is known only now
        c = costs[i]
        costs[i] = OpCost(c.t_pre_s, engine.device_time(i), 0.0, "link", c.detail)
    path = critical_path(insts, costs, timeline)
    keep = records if records is not None else len(insts) <= RECORDS_LIMIT
    summary_ranks = [layout.representative(s) if not symmetric else s
                     for s in range(workload.plan.pp)]
    return summarize(workload, system, layout, insts, costs, timeline, path, memory,
                     engine.network.usage(), keep_records=keep, summary_ranks=summary_ranks,
                     simulated_ranks=len(actors), wall_s=time.perf_counter() - wall)


def _plan(op: Op, stage: int, layout: Layout, system, params: GpuParams,
          algo: str | None, me: int) -> CommPlan:
    """The plan of communication op ``op`` as GPU ``me`` (of ``stage``) takes part in it."""
    attrs = op.attrs
    size = float(attrs.get("bytes", op.bytes_read))
    if op.category == "send_recv":
        direction = attrs.get("direction")
        if direction == "recv":  # waits for the matching send, which carries the bytes
            return CommPlan(0.0, (), "p2p", {"direction": "recv"})
        if direction != "send":
            raise InputError(f"send_recv op {op.id} has direction {direction!r}; "
                             "one of send, recv", field="attrs.direction")
        peer = int(attrs.get("peer", stage + 1))  # a model chunk: on device chunk mod p
        i_tp, i_dp, _ = layout.coordinates(me)
        return p2p_plan(system, me, layout.rank(i_tp, i_dp, peer % layout.plan.pp), size,
                        params)
    kind = attrs.get("collective", attrs.get("kind", "allreduce"))
    gpus = layout.group_of(str(attrs.get("group", "tp")), me)
    return collective_plan(system, kind, size, gpus, params, rank=me, algo=algo, dtype=op.dtype)
