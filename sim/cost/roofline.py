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

:func:`stream_time_s` is the GPU sub-models' memory term, vectorized over numpy arrays: a stream of
B bytes from the serving level takes its latency (the first bytes arrive one round trip after the
requests leave) plus B over the achievable bandwidth,

    t_stream = latency + B / (bandwidth * efficiency)

the latency-bandwidth ("alpha-beta") form of Little's law for a memory system kept full of
requests (Hockney, "The communication challenge for MPP", Parallel Computing 20(3), 1994). It is
what makes achieved bandwidth ramp up with size instead of jumping to its plateau.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sim.hardware import HardwareSpec, MemoryLevel

__all__ = ["KernelTime", "serving_level", "kernel_time", "stream_time_s", "serving_levels"]


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


def serving_levels(spec: HardwareSpec, resident_bytes: np.ndarray) -> list[tuple[MemoryLevel,
                                                                               np.ndarray]]:
    """(level, mask) pairs: which rows of ``resident_bytes`` each level serves (vectorized
    :func:`serving_level`); the masks partition the rows."""
    resident = np.asarray(resident_bytes, dtype=float)
    remaining = np.ones(resident.shape, dtype=bool)
    pairs = []
    for level in spec.memory[1:-1]:
        mask = remaining & (resident <= level.capacity_bytes)
        pairs.append((level, mask))
        remaining &= ~mask
    pairs.append((spec.main_memory, remaining))
    return pairs


def stream_time_s(
    spec: HardwareSpec, nbytes: np.ndarray, resident_bytes: np.ndarray, efficiency: float
) -> np.ndarray:
    """Seconds to stream ``nbytes`` from the level that holds ``resident_bytes`` (see module doc).

    ``efficiency`` is the achievable fraction of the level's bandwidth.
    """
    nbytes = np.asarray(nbytes, dtype=float)
    t = np.zeros(np.broadcast(nbytes, np.asarray(resident_bytes)).shape)
    for level, mask in serving_levels(spec, np.broadcast_to(resident_bytes, t.shape)):
        rate = spec.memory_bandwidth(level) * efficiency
        t = np.where(mask, level.latency_s + nbytes / rate, t)
    return t
