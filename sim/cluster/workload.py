"""A parallel workload: what each pipeline stage's representative rank runs, per micro-batch.

The parallelism transforms (:mod:`workloads.parallel`) turn a single-device trace into this form;
the cluster simulator (:mod:`sim.cluster.simulate`) expands it over micro-batches with a pipeline
schedule and runs it on a system. Ranks that differ only in their tensor-, data- or expert-parallel
index run identical programs, so one representative rank per pipeline stage is simulated and
stands for all ``tp * dp`` ranks of its stage (section "Symmetry" of ``docs/parallelism.md``).

Legend: t tensor-parallel degree, p pipeline stages, d data-parallel degree, e expert-parallel
degree, M micro-batches per iteration.

A stage's program has three op lists (unique ids across the whole workload; an op depends on
earlier ops of its own list, a ``backward`` op also on ``forward`` ops, a ``step`` op also on
``backward`` and ``forward`` ops, which the simulator maps to the last micro-batch):

- ``forward``: one micro-batch's forward on this stage. If the stage is not the first, its first op
  is a ``send_recv`` op with ``attrs["direction"] == "recv"`` (the activation from stage - 1);
  if it is not the last, its last op is a ``send_recv`` op with ``direction == "send"`` to
  stage + 1. ``attrs["bytes"]`` is the message size.
- ``backward``: one micro-batch's backward: a ``recv`` of the output gradient from stage + 1 first
  (unless last stage), a ``send`` of the input gradient to stage - 1 last (unless first stage).
  Its ops may depend on ``forward`` ops (saved activations): the simulator maps such a dep to the
  same micro-batch's forward instance.
- ``step``: once per iteration, after the last micro-batch's backward: gradient reduction that did
  not overlap backward, the optimizer, parameter all-gathers (ZeRO).

Collective ops (category ``collective``) carry ``attrs``: ``collective`` (allreduce, allgather,
reducescatter, alltoall), ``group`` (tp, dp, ep, or dp_ep ...: which parallel dimension's ranks
take part), ``bytes`` (nccl-tests convention: the per-rank input of all-reduce / reduce-scatter /
all-to-all, the gathered output of all-gather). An op with ``attrs["last_microbatch"] = True``
(data-parallel gradient reduction overlapping backward) runs only in the last micro-batch's
backward. Communication that overlaps compute is on stream 1; tensor-parallel collectives on the
compute stream 0 (Megatron-LM runs them in line).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sim.errors import InputError
from sim.trace import Op

__all__ = ["ParallelPlan", "StageProgram", "ParallelWorkload", "SCHEDULES"]

SCHEDULES = ("1f1b", "gpipe")


@dataclass(frozen=True)
class ParallelPlan:
    """How a model is split: degrees, micro-batches, pipeline schedule and memory options.

    ``zero``: 0 = plain data parallel (all-reduce gradients), 1 = optimizer state sharded over dp
    (Megatron's distributed optimizer: reduce-scatter gradients, all-gather parameters), 2 = and
    gradients, 3 = and parameters (FSDP: all-gather weights before each layer's forward and
    backward). ``recompute``: full activation recomputation (a layer keeps only its input; its
    forward runs again before its backward). ``virtual_stages`` v > 1: Megatron-LM's interleaved
    1F1B schedule (Narayanan et al. SC'21, sec. 2.2.2): the layers form p v model chunks and
    device s holds chunks s, s + p, ..., s + (v - 1) p, which cuts the bubble by v for v times
    the pipeline messages; micro-batches must be a multiple of p.
    """

    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1
    microbatches: int = 1
    schedule: str = "1f1b"
    sequence_parallel: bool = False
    zero: int = 0
    recompute: bool = False
    bucket_bytes: float = 25 * 2**20  # PyTorch DDP default bucket_cap_mb = 25
    virtual_stages: int = 1

    def __post_init__(self) -> None:
        for name in ("tp", "pp", "dp", "ep", "microbatches", "virtual_stages"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(f"must be a positive integer, got {value!r}", field=f"--{name}")
        if self.schedule not in SCHEDULES:
            raise InputError(f"unknown schedule {self.schedule!r}; one of {', '.join(SCHEDULES)}",
                             field="--schedule")
        if self.virtual_stages > 1:
            if self.pp < 2 or self.schedule != "1f1b":
                raise InputError("virtual stages interleave a 1F1B pipeline: they need --pp >= 2 "
                                 "and --schedule 1f1b", field="--virtual-stages")
            if self.microbatches % self.pp:
                raise InputError(f"the interleaved schedule needs micro-batches in multiples of "
                                 f"the {self.pp} stages, got {self.microbatches}",
                                 field="--microbatches")
        if self.zero not in (0, 1, 2, 3):
            raise InputError(f"ZeRO stage must be 0-3, got {self.zero!r}", field="--zero")
        if self.dp % self.ep and self.ep > 1:
            raise InputError(f"expert parallel {self.ep} must divide data parallel {self.dp} "
                             "(experts are sharded over data-parallel ranks)", field="--ep")

    @property
    def chunks(self) -> int:
        """Model chunks the layers are cut into: p v (p without interleaving)."""
        return self.pp * self.virtual_stages

    @property
    def world(self) -> int:
        """Ranks in all: t * p * d (expert parallelism reuses the data-parallel ranks)."""
        return self.tp * self.pp * self.dp


@dataclass(frozen=True)
class StageProgram:
    """One pipeline stage's representative rank: per-micro-batch forward and backward, per-step
    ops, and the stage's static memory (bytes per rank: ``weights``, ``gradients``,
    ``optimizer``) and activation bytes kept per micro-batch in flight (``activations``); an
    inference trace's stage also holds ``kv_cache`` (bytes of keys and values of its layers).
    :func:`workloads.parallel.parallelize` fills all five keys."""

    stage: int
    forward: tuple[Op, ...]
    backward: tuple[Op, ...] = ()
    step: tuple[Op, ...] = ()
    memory_bytes: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ParallelWorkload:
    """Per-chunk programs of a parallel run (one per pipeline stage; ``plan.chunks`` of them
    with virtual stages, chunk k on device k mod p) plus ``meta``: the source trace's meta and
    ``model_flops`` (FLOP of one iteration of the whole model over all ranks, without
    recomputation: what MFU counts), ``tokens`` per iteration, ``params``."""

    plan: ParallelPlan
    stages: tuple[StageProgram, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)
