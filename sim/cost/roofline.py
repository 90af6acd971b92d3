"""The roofline of one kernel: the slowest of its compute, memory and latency times.

    t_k = max(t_compute, t_memory, t_latency)
    t_compute = FLOPs / (peak FLOP/s of the engine for the dtype * efficiency)
    t_memory  = bytes / (bandwidth of the serving level * memory efficiency)
    t_latency = latency of the serving level (one dependent round trip: the floor of any kernel)

(Williams, Waterman, Patterson, "Roofline: an insightful visual performance model for multicore
architectures", CACM 52(4), 2009, eq. 1; the latency floor follows the extended roofline of
Cabezas & Püschel, "Extending the roofline model", 2014.)

The serving level is the innermost level, past the first (registers/L1/shared memory do not keep
data between kernels), whose capacity holds the kernel's working set: a working set that fits in
L2 / LLC streams at its bandwidth, a larger one from HBM / DRAM.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sim.hardware import HardwareSpec, MemoryLevel

__all__ = ["KernelTime", "serving_level", "kernel_time"]


@dataclass(frozen=True, slots=True)
class KernelTime:
    """One kernel's time t_k, the resource that bounds it, and the terms that were compared."""

    t_s: float
    bound: str
    detail: dict[str, Any] = field(default_factory=dict)


def serving_level(spec: HardwareSpec, working_set_bytes: float) -> MemoryLevel:
    """The level that serves a kernel whose inputs and outputs total ``working_set_bytes``."""
    levels = spec.memory[1:] or spec.memory
    for level in levels:
        if working_set_bytes <= level.capacity_bytes:
            return level
    return spec.main_memory


def kernel_time(
    spec: HardwareSpec,
    *,
    flops: float,
    flops_per_s: float,
    bytes_moved: float,
    working_set_bytes: float | None = None,
) -> KernelTime:
    """Roofline time of one kernel; ``flops_per_s`` is already the achievable rate."""
    level = serving_level(spec, bytes_moved if working_set_bytes is None else working_set_bytes)
    bandwidth = spec.memory_bandwidth(level) * spec.efficiency.memory
    terms = {
        "compute": flops / flops_per_s if flops > 0 else 0.0,
        "memory": bytes_moved / bandwidth if bytes_moved > 0 else 0.0,
        "latency": level.latency_s,
    }
    bound = max(terms, key=terms.get)  # ties: first listed wins (dict order), deterministic
    detail = {
        "t_compute_s": terms["compute"],
        "t_memory_s": terms["memory"],
        "t_latency_s": terms["latency"],
        "flops": flops,
        "achievable_flops_per_s": flops_per_s,
        "bytes": bytes_moved,
        "memory_level": level.name,
        "achievable_bytes_per_s": bandwidth,
    }
    return KernelTime(t_s=terms[bound], bound=bound, detail=detail)
