"""The outcome of a parallel simulation: T, where it went, and what the hardware did.

Per stage (its representative rank): compute time, communication time and the part of it that is
*exposed* (no compute of that rank runs meanwhile), the compute stream's idle fraction of T (the
pipeline *bubble*: warm-up, drain and waits), and the critical path's split into host (t_pre),
compute and communication. Per port (a GPU's scale-up link or NIC): bytes carried, busy time and
utilization (bytes over capacity x T). Memory per stage with its verdict. Model FLOPs utilization
(PaLM, Chowdhery et al. 2022, appendix B): the model's FLOPs of one iteration, without
recomputation, over T x GPUs x the device's dense peak; hardware FLOPs utilization (HFU) counts
the FLOPs actually executed, recomputation included.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sim.cluster.layout import Layout
from sim.cluster.memory import StageMemory
from sim.cluster.program import Inst
from sim.cluster.workload import ParallelWorkload
from sim.cost import OpCost
from sim.critical_path import CriticalPath
from sim.timeline import build_records

__all__ = ["ClusterResult", "summarize"]

_COMM = ("collective", "send_recv")
_DISPLAY_SEGMENTS = 2000


@dataclass(frozen=True)
class ClusterResult:
    """One iteration of a parallel run (module doc). ``records`` is the per-instance DataFrame
    of :mod:`sim.result` (rank = stage) when kept, else None."""

    total_s: float
    system: str
    device: str
    plan: dict[str, Any]
    stages: list[dict[str, Any]]
    links: list[dict[str, Any]]
    memory: list[StageMemory]
    mfu: float
    hfu: float
    tokens_per_s: float
    model_flops: float
    num_instances: int
    simulated_ranks: int
    world: int
    wall_s: float
    records: pd.DataFrame | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def bubble_fraction(self) -> float:
        return float(np.mean([s["bubble_fraction"] for s in self.stages]))

    @property
    def exposed_comm_s(self) -> float:
        return max((s["exposed_comm_s"] for s in self.stages), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_s": self.total_s, "system": self.system, "device": self.device,
            "plan": self.plan, "world": self.world, "simulated_ranks": self.simulated_ranks,
            "mfu": self.mfu, "hfu": self.hfu, "tokens_per_s": self.tokens_per_s,
            "model_flops": self.model_flops, "bubble_fraction": self.bubble_fraction,
            "stages": self.stages, "links": self.links,
            "memory": [m.to_dict() for m in self.memory],
            "num_instances": self.num_instances, "sim_wall_s": self.wall_s,
        }


def summarize(workload: ParallelWorkload, system, layout: Layout, insts: Sequence[Inst],
              costs: Sequence[OpCost], tl, path: CriticalPath, memory: list[StageMemory],
              ports: dict, *, keep_records: bool, wall_s: float,
              summary_ranks: list[int] | None = None,
              simulated_ranks: int | None = None) -> ClusterResult:
    """Summaries of a finished run; stage s is summarized from the instances of rank
    ``summary_ranks[s]`` (default s: the representatives are numbered by stage)."""
    total = path.total_s
    plan = workload.plan
    by_rank: dict[int, list[int]] = defaultdict(list)
    for i, inst in enumerate(insts):
        by_rank[inst.rank].append(i)
    ranks = summary_ranks or list(range(plan.pp))
    stages = [_stage_summary(s, by_rank[ranks[s]], insts, tl, path, total)
              for s in range(plan.pp)]
    dtype = _dominant_dtype(insts)
    peak = system.device.compute.matrix_peak(dtype)
    world = plan.world
    executed = sum(st["flops"] for st in stages) * plan.tp * plan.dp
    model_flops = float(workload.meta.get("model_flops", executed))
    denominator = total * world * peak if total > 0 else float("inf")
    tokens = float(workload.meta.get("tokens", 0.0))
    links = [_port_summary(key, usage, layout, total) for key, usage in sorted(
        ports.items(), key=lambda kv: (kv[0][0], str(kv[0][1])))]
    records = build_records(insts, costs, tl, path) if keep_records else None
    return ClusterResult(
        total_s=total, system=system.name, device=system.device.name,
        plan={"tp": plan.tp, "pp": plan.pp, "dp": plan.dp, "ep": plan.ep,
              "microbatches": plan.microbatches, "schedule": plan.schedule,
              "sequence_parallel": plan.sequence_parallel, "zero": plan.zero,
              "recompute": plan.recompute, "virtual_stages": plan.virtual_stages},
        stages=stages, links=links, memory=memory, mfu=model_flops / denominator,
        hfu=executed / denominator, tokens_per_s=tokens / total if total > 0 else 0.0,
        model_flops=model_flops, num_instances=len(insts),
        simulated_ranks=simulated_ranks or len(stages),
        world=world, wall_s=wall_s, records=records, meta=dict(workload.meta))


def _stage_summary(stage: int, mine: list[int], insts, tl, path: CriticalPath,
                   total: float) -> dict:
    compute, comm, stream0 = [], [], []
    crit = defaultdict(float)
    flops = 0.0
    for i in mine:
        inst = insts[i]
        interval = (tl.start[i], tl.end[i])
        is_comm = inst.op.category in _COMM
        (comm if is_comm else compute).append(interval)
        if inst.stream == 0:
            stream0.append(interval)
        flops += inst.op.flops
        crit["host"] += path.pre_s[i]
        crit["comm" if is_comm else "compute"] += path.calc_s[i] + path.post_s[i]
    comm_union, compute_union = _union(comm), _union(compute)
    exposed = _length(comm_union) - _overlap(comm_union, compute_union)
    busy0 = _length(_union(stream0))
    gap = total / _DISPLAY_SEGMENTS
    return {
        "stage": stage, "compute_s": _length(compute_union),
        "comm_s": _length(comm_union), "exposed_comm_s": exposed,
        "overlapped_comm_s": _length(comm_union) - exposed,
        "bubble_fraction": 1.0 - busy0 / total if total > 0 else 0.0,
        "crit_host_s": crit["host"], "crit_compute_s": crit["compute"],
        "crit_comm_s": crit["comm"], "flops": flops,
        # busy intervals at display resolution (gaps under T / 2000 closed), for plots
        "compute_intervals": _coarse(compute_union, gap),
        "comm_intervals": _coarse(comm_union, gap),
    }


def _coarse(u: np.ndarray, gap: float) -> list[list[float]]:
    """Close gaps shorter than ``gap`` in a disjoint sorted union (for drawing)."""
    out: list[list[float]] = []
    for s, e in u:
        if out and s - out[-1][1] < gap:
            out[-1][1] = float(e)
        else:
            out.append([float(s), float(e)])
    return out


def _port_summary(key, usage, layout: Layout, total: float) -> dict:
    gpu, kind = key
    return {"gpu": gpu, "port": "nic" if kind == "net" else "scale-up", "bytes": usage.bytes,
            "busy_s": usage.busy_s, "capacity_bytes_per_s": usage.capacity_bytes_per_s,
            "utilization": usage.bytes / (usage.capacity_bytes_per_s * total) if total else 0.0,
            "busy_fraction": usage.busy_s / total if total else 0.0}


def _union(intervals: list[tuple[float, float]]) -> np.ndarray:
    """Disjoint sorted union of intervals, as an (n, 2) array."""
    if not intervals:
        return np.zeros((0, 2))
    a = np.array(sorted(intervals))
    out = []
    start, end = a[0]
    for s, e in a[1:]:
        if s > end:
            out.append((start, end))
            start, end = s, e
        elif e > end:
            end = e
    out.append((start, end))
    return np.array(out)


def _length(u: np.ndarray) -> float:
    return float((u[:, 1] - u[:, 0]).sum()) if len(u) else 0.0


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Length of the intersection of two disjoint sorted interval sets."""
    total, j = 0.0, 0
    for s, e in a:
        while j < len(b) and b[j, 1] <= s:
            j += 1
        k = j
        while k < len(b) and b[k, 0] < e:
            total += min(e, b[k, 1]) - max(s, b[k, 0])
            k += 1
    return total


def _dominant_dtype(insts: Sequence[Inst]) -> str:
    flops: dict[str, float] = defaultdict(float)
    seen = set()
    for inst in insts:
        if id(inst.op) not in seen:
            seen.add(id(inst.op))
            flops[inst.op.dtype] += inst.op.flops
    return max(sorted(flops), key=flops.get) if flops else "fp32"
