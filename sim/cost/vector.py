"""Vector-unit ops: elementwise, reductions, norms, embedding gathers, copies.

These ops do few FLOPs per byte, so on every modern device they are bound by the memory level that
serves their working set, or, when tiny, by its latency. Their FLOPs run on the vector (SIMT/SIMD)
units at the dtype's vector peak:

    plain: t_k = max(flops / (vector_peak * eff_vector), bytes / (bandwidth * eff_memory), latency)

On a GPU (:func:`stream_op_times`, vectorized; parameters in :class:`GpuParams`) the bytes stream
with the latency-bandwidth ramp of :func:`~sim.cost.roofline.stream_time_s`, overlapped with the
FLOPs; a kernel whose critical path waits on further dependent DRAM round trips (one CTA per row
looping over it: each loop step waits for its loads) adds them at the spec's DRAM latency; and
every kernel pays the fixed device overhead (launch ramp and tail), counted in SM cycles:

    GPU:   t_k = max(latency + round_trips * DRAM latency + bytes / (bandwidth * stream_efficiency),
                     flops / (vector_peak * vector_efficiency)) + kernel_overhead
    kernel_overhead = kernel_overhead_cycles / SM clock (:func:`kernel_overhead_s`)

(Williams et al., "Roofline", CACM 2009, for the max; Hockney 1994 for the latency + size/bandwidth
ramp.)
"""

from __future__ import annotations

import numpy as np

from sim.cost.gpu_params import GpuParams, kernel_overhead_s
from sim.cost.roofline import KernelTime, kernel_time, serving_level, stream_time_s
from sim.hardware import HardwareSpec

__all__ = ["vector_time", "stream_op_times"]


def stream_op_times(
    spec: HardwareSpec,
    params: GpuParams,
    *,
    nbytes: np.ndarray,
    flops: np.ndarray,
    dtype: str,
    resident_bytes: np.ndarray | None = None,
    clock_mode: str = "default",
    round_trips: float | np.ndarray = 0.0,
) -> dict[str, np.ndarray]:
    """GPU memory-bound kernel times (s) for arrays of byte and FLOP counts (see module doc).

    ``round_trips``: dependent main-memory round trips the kernel's critical path makes besides
    the stream's own (a kernel that loops over a row with one CTA per row waits once per loop
    step; a row reduction adds one before the normalizing pass), at the spec's DRAM latency.
    """
    nbytes = np.asarray(nbytes, dtype=float)
    resident = nbytes if resident_bytes is None else np.asarray(resident_bytes, dtype=float)
    t_memory = (stream_time_s(spec, nbytes, resident, params.stream_efficiency)
                + round_trips * spec.main_memory.latency_s)
    rate = spec.compute.vector_peak(dtype) * params.vector_efficiency
    t_compute = np.asarray(flops, dtype=float) / rate
    t = np.maximum(t_memory, t_compute) + kernel_overhead_s(spec, params, clock_mode)
    return {"t_s": t, "t_memory_s": t_memory, "t_compute_s": t_compute}


def vector_time(
    spec: HardwareSpec,
    *,
    flops: float,
    bytes_moved: float,
    dtype: str,
    params: GpuParams | None = None,
) -> KernelTime:
    """One memory-bound kernel: the GPU model with ``params``, else the plain roofline."""
    if spec.kind != "gpu" or params is None:
        rate = spec.compute.vector_peak(dtype) * spec.efficiency.vector
        return kernel_time(spec, flops=flops, flops_per_s=rate, bytes_moved=bytes_moved)
    t_s = float(stream_op_times(spec, params, nbytes=bytes_moved, flops=flops, dtype=dtype)["t_s"])
    level = serving_level(spec, bytes_moved)
    bandwidth = spec.memory_bandwidth(level) * params.stream_efficiency
    rate = spec.compute.vector_peak(dtype) * params.vector_efficiency
    terms = {"compute": flops / rate, "memory": bytes_moved / bandwidth,
             "latency": level.latency_s + kernel_overhead_s(spec, params)}
    detail = {"t_compute_s": terms["compute"], "t_memory_s": terms["memory"],
              "t_latency_s": terms["latency"], "flops": flops, "achievable_flops_per_s": rate,
              "bytes": bytes_moved, "memory_level": level.name,
              "achievable_bytes_per_s": bandwidth}
    return KernelTime(t_s=t_s, bound=max(terms, key=terms.get), detail=detail)
