"""Which split is best? Simulate every parallel layout of a trace on a system and rank them.

For a global batch of B sequences on G GPUs of a system, with the trace's micro-batch of b
sequences, every (t, p, d) with t p d = G (each a power-of-two-style divisor from the lists
given), every ZeRO stage and recomputation choice asked for, gets M = B / (d b) micro-batches;
layouts that do not divide the model (heads, layers, vocabulary) or the batch are skipped with
the reason, layouts that do not fit in memory are reported with their peak, and the rest are
simulated (one representative rank per stage) and ranked by tokens per second.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sim.cluster.memory import memory_report
from sim.cluster.simulate import simulate_parallel
from sim.cluster.workload import ParallelPlan, ParallelWorkload
from sim.errors import InputError
from sim.trace import Trace

__all__ = ["SweepRow", "sweep_layouts", "candidate_plans"]


@dataclass(frozen=True)
class SweepRow:
    """One layout: its plan, and either its simulated figures or why it was not simulated."""

    plan: ParallelPlan
    status: str  # "ok", "out of memory" or "invalid"
    reason: str = ""
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        p = self.plan
        return {"tp": p.tp, "pp": p.pp, "dp": p.dp, "microbatches": p.microbatches,
                "zero": p.zero, "recompute": p.recompute,
                "virtual_stages": p.virtual_stages, "status": self.status,
                "reason": self.reason, **self.figures}


def candidate_plans(num_gpus: int, global_batch: int, micro_batch: int, *,
                    tp: Iterable[int], pp: Iterable[int], zero: Iterable[int],
                    recompute: Iterable[bool]) -> list[ParallelPlan | tuple[dict, str]]:
    """Every plan of the grid; a grid point that cannot be a plan comes back as (degrees,
    reason)."""
    out: list[ParallelPlan | tuple[dict, str]] = []
    for t in sorted(set(tp)):
        for p in sorted(set(pp)):
            if num_gpus % (t * p):
                continue
            d = num_gpus // (t * p)
            for z in sorted(set(zero)):
                for r in sorted(set(recompute)):
                    degrees = {"tp": t, "pp": p, "dp": d, "zero": z, "recompute": r}
                    if global_batch % (d * micro_batch):
                        out.append((degrees, f"global batch {global_batch} is not a multiple "
                                    f"of dp x micro-batch = {d * micro_batch}"))
                        continue
                    if z and d == 1:
                        continue  # ZeRO shards over data-parallel ranks: nothing to shard
                    out.append(ParallelPlan(tp=t, pp=p, dp=d, zero=z, recompute=r,
                                            microbatches=global_batch // (d * micro_batch)))
    return out


def sweep_layouts(trace: Trace, system, parallelize: Callable[[Trace, ParallelPlan],
                                                              ParallelWorkload],
                  candidates: Sequence[ParallelPlan | tuple[dict, str]], *, cost_model=None,
                  progress: Callable[[Iterable], Iterable] = iter) -> list[SweepRow]:
    """Simulate each candidate (see the module doc); rows sorted best first (tokens/s), then
    those out of memory (smallest peak first), then the invalid ones."""
    rows = []
    for candidate in progress(candidates):
        if isinstance(candidate, tuple):
            degrees, reason = candidate
            rows.append(SweepRow(ParallelPlan(tp=degrees["tp"], pp=degrees["pp"],
                                              dp=degrees["dp"], zero=degrees["zero"],
                                              recompute=degrees["recompute"]),
                                 "invalid", reason))
            continue
        rows.append(_one(trace, system, parallelize, candidate, cost_model))
    order = {"ok": 0, "out of memory": 1, "invalid": 2}
    return sorted(rows, key=lambda r: (order[r.status], -r.figures.get("tokens_per_s", 0.0),
                                       r.figures.get("peak_bytes", 0.0), _key(r.plan)))


def _one(trace, system, parallelize, plan: ParallelPlan, cost_model) -> SweepRow:
    try:
        workload = parallelize(trace, plan)
    except InputError as exc:
        return SweepRow(plan, "invalid", exc.one_line())
    memory = memory_report(workload, system.device.main_memory.capacity_bytes)
    peak = max(m.peak_bytes for m in memory)
    if any(m.verdict == "out of memory" for m in memory):
        return SweepRow(plan, "out of memory", f"peak {peak / 1e9:.1f} GB per GPU",
                        {"peak_bytes": peak})
    r = simulate_parallel(workload, system, cost_model=cost_model, records=False)
    return SweepRow(plan, "ok", figures={
        "total_s": r.total_s, "tokens_per_s": r.tokens_per_s, "mfu": r.mfu,
        "bubble_fraction": r.bubble_fraction, "exposed_comm_s": r.exposed_comm_s,
        "peak_bytes": peak, "verdict": max((m.verdict for m in r.memory),
                                           key=("fits", "at risk").index)})


def _key(plan: ParallelPlan) -> tuple:
    return (plan.tp, plan.pp, plan.dp, plan.zero, plan.recompute)
