"""Parallelism as trace transforms: a single-device trace to per-stage programs of a cluster run.

:func:`parallelize` applies a :class:`~sim.cluster.workload.ParallelPlan` to a trace: tensor
parallelism (:mod:`.tensor`, Megatron-LM; with sequence parallelism), pipeline stages
(:mod:`.pipeline`), expert parallelism (:mod:`.expert`), activation recomputation
(:mod:`.recompute`) and data parallelism with ZeRO (:mod:`.data`), and the memory of each stage
(:mod:`.memory`). Pure functions of ops: nothing here runs a model.
"""

from workloads.parallel.memory import stage_memory
from workloads.parallel.parallelize import parallelize, split_phases
from workloads.parallel.pipeline import split_stages
from workloads.parallel.tensor import tensor_parallel

__all__ = ["parallelize", "split_phases", "split_stages", "stage_memory", "tensor_parallel"]
