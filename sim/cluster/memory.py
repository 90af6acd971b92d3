"""Per-device memory of a parallel run: what each stage's GPUs hold at their peak, and whether
it fits.

A stage's static bytes (weights, gradients, optimizer state: per rank, after tensor-parallel and
ZeRO sharding) come from the transform (:class:`~sim.cluster.workload.StageProgram`); activations
are per micro-batch in flight. The schedule fixes how many are in flight at the peak (Narayanan et
al. SC'21, sec. 2.2): GPipe keeps all M; 1F1B keeps min(p - s, M) on stage s (stage 0 holds the
most); the interleaved 1F1B keeps its warm-up chunk passes; inference keeps one
(:func:`in_flight`). KV cache (prefill / decode) is held as is. The peak is the sum: the
allocator's fragmentation and the framework's workspace (cuBLAS, NCCL buffers) are not modeled,
so a stage above ``HEADROOM`` of the device's memory is reported as at risk.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.cluster.workload import ParallelWorkload
from sim.errors import InputError
from sim.units import format_quantity

__all__ = ["StageMemory", "memory_report", "check_fits", "HEADROOM", "PARTS"]

#: Fraction of device memory usable by tensors: CUDA context, NCCL and cuBLAS workspaces and
#: allocator fragmentation take the rest (estimate; PyTorch's caching allocator typically
#: reserves 5-10% more than it allocates).
HEADROOM = 0.9
PARTS = ("weights", "gradients", "optimizer", "activations", "kv_cache")


@dataclass(frozen=True)
class StageMemory:
    """Peak bytes per GPU of one stage, by part, against the device's capacity."""

    stage: int
    parts: dict[str, float]
    microbatches_in_flight: int
    capacity_bytes: float

    @property
    def peak_bytes(self) -> float:
        return sum(self.parts.values())

    @property
    def verdict(self) -> str:
        """fits, at risk (above :data:`HEADROOM` of capacity) or out of memory."""
        if self.peak_bytes > self.capacity_bytes:
            return "out of memory"
        return "at risk" if self.peak_bytes > HEADROOM * self.capacity_bytes else "fits"

    def breakdown(self) -> str:
        parts = ", ".join(f"{k} {format_quantity(v, 'B')}" for k, v in self.parts.items()
                          if v > 0)
        return f"{format_quantity(self.peak_bytes, 'B')} ({parts})"

    def to_dict(self) -> dict:
        return {"stage": self.stage, "peak_bytes": self.peak_bytes, "parts": dict(self.parts),
                "microbatches_in_flight": self.microbatches_in_flight,
                "capacity_bytes": self.capacity_bytes, "verdict": self.verdict}


def in_flight(plan, stage: int, train: bool) -> int:
    """Micro-batches (chunk passes with virtual stages) whose activations device ``stage``
    holds at its peak: GPipe M, 1F1B min(p - s, M), interleaved 1F1B its warm-up forwards
    (p - s - 1) 2 + (v - 1) p plus one, at most M v; inference 1."""
    p, v, M = plan.pp, plan.virtual_stages, plan.microbatches
    if not train:
        return 1
    if plan.schedule == "gpipe":
        return M
    if v > 1:
        return min((p - stage - 1) * 2 + (v - 1) * p + 1, M * v)
    return min(p - stage, M)


def memory_report(workload: ParallelWorkload, capacity_bytes: float) -> list[StageMemory]:
    """Per device stage: the static parts of the model chunks it holds, plus activations of
    one chunk (their mean) per pass in flight."""
    plan, chunks = workload.plan, workload.stages
    report = []
    for s in range(plan.pp):
        mine = chunks[s::plan.pp]
        flight = in_flight(plan, s, bool(mine[0].backward))
        parts = {k: sum(float(c.memory_bytes.get(k, 0.0)) for c in mine) for k in PARTS}
        parts["activations"] *= flight / len(mine)
        report.append(StageMemory(s, parts, flight, capacity_bytes))
    return report


def check_fits(report: list[StageMemory], device: str) -> None:
    """One-line error for the fullest stage that does not fit."""
    worst = max(report, key=lambda r: r.peak_bytes - r.capacity_bytes, default=None)
    if worst is not None and worst.verdict == "out of memory":
        raise InputError(
            f"does not fit: stage {worst.stage} needs {worst.breakdown()} per GPU, more than the "
            f"{format_quantity(worst.capacity_bytes, 'B')} of {device}; use more tensor/pipeline "
            "parallelism, ZeRO (--zero), recomputation (--recompute) or fewer micro-batches in "
            "flight (or --allow-oom to simulate anyway)", field="memory")
