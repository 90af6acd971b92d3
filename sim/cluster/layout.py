"""Where ranks sit: global rank -> GPU, and the GPUs of each parallel group.

Megatron-LM's default rank order puts the tensor-parallel index fastest, then data parallel, then
pipeline stage (``RankGenerator`` order "tp-cp-ep-dp-pp", megatron/core/parallel_state.py):

    rank = i_tp + t * (i_dp + d * i_pp)

so a tensor-parallel group is t consecutive GPUs (one NVLink domain when t <= its size), a
data-parallel group strides by t, and a pipeline stage owns t * d consecutive GPUs. GPU g is rank
g (GPUs are numbered domain-major). The representative rank of stage s is (i_tp, i_dp) = (0, 0).
Expert parallelism reuses the data-parallel ranks: an expert group is the first e members of the
stage's data-parallel group. A run of fewer ranks than the system has GPUs (a divisor of it) uses
GPUs 0 .. world - 1 (e.g. 4 GPUs of an 8-GPU node).
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.cluster.workload import ParallelPlan
from sim.errors import InputError

__all__ = ["Layout", "GROUPS"]

GROUPS = ("tp", "dp", "ep", "dp_ep")


@dataclass(frozen=True)
class Layout:
    """Rank placement of ``plan`` on a system with ``num_gpus`` GPUs."""

    plan: ParallelPlan
    num_gpus: int

    def __post_init__(self) -> None:
        world = self.plan.world
        if world > self.num_gpus or self.num_gpus % world:
            raise InputError(
                f"TP{self.plan.tp} x PP{self.plan.pp} x DP{self.plan.dp} = {world} ranks do not "
                f"divide the system's {self.num_gpus} GPUs (choose degrees whose product is the "
                "GPU count or divides it, or resize the system with --nodes)",
                field="--tp/--pp/--dp")

    def rank(self, i_tp: int, i_dp: int, i_pp: int) -> int:
        t, d = self.plan.tp, self.plan.dp
        return i_tp + t * (i_dp + d * i_pp)

    def representative(self, stage: int) -> int:
        """The GPU standing for all ranks of pipeline stage ``stage``."""
        return self.rank(0, 0, stage)

    def coordinates(self, rank: int) -> tuple[int, int, int]:
        """(i_tp, i_dp, i_pp) of ``rank``."""
        t, d = self.plan.tp, self.plan.dp
        return rank % t, (rank // t) % d, rank // (t * d)

    def group_of(self, name: str, rank: int) -> tuple[int, ...]:
        """GPUs of ``rank``'s ``name`` group (the representative's group, shifted)."""
        i_tp, i_dp, i_pp = self.coordinates(rank)
        t, e = self.plan.tp, self.plan.ep
        if name == "tp":
            return tuple(self.rank(i, i_dp, i_pp) for i in range(t))
        if name == "dp":
            return tuple(self.rank(i_tp, j, i_pp) for j in range(self.plan.dp))
        if name == "ep":
            first = i_dp - i_dp % e
            return tuple(self.rank(i_tp, j, i_pp) for j in range(first, first + e))
        if name == "dp_ep":
            return tuple(self.rank(i_tp, j, i_pp) for j in range(i_dp % e, self.plan.dp, e))
        return self.group(name, i_pp)  # the error for an unknown name

    def group(self, name: str, stage: int) -> tuple[int, ...]:
        """GPUs of the representative's ``name`` group (tp, dp, ep, or dp_ep = the data-parallel
        ranks holding the same experts: d / e of them) in ``stage``."""
        t, d, e = self.plan.tp, self.plan.dp, self.plan.ep
        if name == "tp":
            return tuple(self.rank(i, 0, stage) for i in range(t))
        if name == "dp":
            return tuple(self.rank(0, j, stage) for j in range(d))
        if name == "ep":
            return tuple(self.rank(0, j, stage) for j in range(e))
        if name == "dp_ep":
            return tuple(self.rank(0, j, stage) for j in range(0, d, e))
        raise InputError(f"unknown parallel group {name!r}; one of {', '.join(GROUPS)}",
                         field="attrs.group")
