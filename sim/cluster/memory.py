"""Per-device memory of a parallel run: what each stage's GPUs hold at their peak, and whether
it fits.

A stage's static bytes (weights, gradients, optimizer state: per rank, after tensor-parallel and
ZeRO sharding) come from the transform (:class:`~sim.cluster.workload.StageProgram`); activations
are per micro-batch in flight. The schedule fixes how many are in flight at the peak (Narayanan et
al. SC'21, sec. 2.2): GPipe keeps all M; 1F1B keeps min(p - s, M) on stage s (stage 0 holds the
most); inference keeps one. KV cache (prefill / decode) is held as is. The peak is the sum: the
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


def in_flight(schedule: str, stage: int, stages: int, microbatches: int, train: bool) -> int:
    if not train:
        return 1
    if schedule == "gpipe":
        return microbatches
    return min(stages - stage, microbatches)


def memory_report(workload: ParallelWorkload, capacity_bytes: float) -> list[StageMemory]:
    plan, stages = workload.plan, workload.stages
    report = []
    for st in stages:
        mem = st.memory_bytes
        flight = in_flight(plan.schedule, st.stage, len(stages), plan.microbatches,
                           bool(st.backward))
        parts = {k: float(mem.get(k, 0.0)) for k in PARTS}
        parts["activations"] *= flight
        report.append(StageMemory(st.stage, parts, flight, capacity_bytes))
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
