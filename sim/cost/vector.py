"""Vector-unit ops: elementwise, reductions, norms, embedding gathers, copies.

These ops do few FLOPs per byte, so on every modern device they are bound by the memory level that
serves their working set, or, when tiny, by its latency. Their FLOPs run on the vector (SIMT/SIMD)
units at the dtype's vector peak:

    t_k = max(flops / (vector_peak * eff_vector), bytes / (bandwidth * eff_memory), latency)
"""

from __future__ import annotations

from sim.cost.roofline import KernelTime, kernel_time
from sim.hardware import HardwareSpec

__all__ = ["vector_time"]


def vector_time(spec: HardwareSpec, *, flops: float, bytes_moved: float, dtype: str) -> KernelTime:
    rate = spec.compute.vector_peak(dtype) * spec.efficiency.vector
    return kernel_time(spec, flops=flops, flops_per_s=rate, bytes_moved=bytes_moved)
