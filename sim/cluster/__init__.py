"""Many devices: system specs (topology), parallel workloads, and their simulation.

    from sim.cluster import load_system, simulate_parallel, ParallelPlan
    from workloads.parallel import parallelize
    system = load_system("dgx-h100-superpod").with_domains(16)
    plan = ParallelPlan(tp=8, pp=4, dp=4, microbatches=16, recompute=True)
    result = simulate_parallel(parallelize(trace, plan), system)
    result.total_s, result.mfu, result.stages, result.links, result.memory

Modules: :mod:`~sim.cluster.system` and :mod:`~sim.cluster.topology` (specs and their graph),
:mod:`~sim.cluster.workload` (the per-stage programs the transforms produce),
:mod:`~sim.cluster.layout` (ranks on GPUs), :mod:`~sim.cluster.comm` (collectives on the topology),
:mod:`~sim.cluster.links` (shared ports), :mod:`~sim.cluster.program` (schedules),
:mod:`~sim.cluster.engine` (the SimPy actors), :mod:`~sim.cluster.simulate`,
:mod:`~sim.cluster.memory`, :mod:`~sim.cluster.result` and the reports.
"""

from sim.cluster.result import ClusterResult
from sim.cluster.simulate import simulate_parallel
from sim.cluster.system import SystemSpec, list_systems, load_system
from sim.cluster.workload import ParallelPlan, ParallelWorkload, StageProgram

__all__ = ["ClusterResult", "ParallelPlan", "ParallelWorkload", "StageProgram", "SystemSpec",
           "list_systems", "load_system", "simulate_parallel"]
