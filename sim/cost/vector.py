"""Vector-unit ops: elementwise, reductions, norms, embedding gathers, copies.

These ops do few FLOPs per byte, so on every modern device they are bound by the memory level that
serves their working set, or, when tiny, by its latency. Their FLOPs run on the vector (SIMT/SIMD)
units at the dtype's vector peak:

    plain: t_k = max(flops / (vector_peak * eff_vector), bytes / (bandwidth * eff_memory), latency)

On a GPU (:func:`stream_op_times`, vectorized; parameters in :class:`GpuParams`) the bytes stream
with the latency-bandwidth ramp of :func:`~sim.cost.roofline.stream_time_s`, overlapped with the
FLOPs: the inputs a recent kernel left in L2 (``hot_bytes``, :mod:`sim.cost.l2_reuse`) at the L2's
bandwidth, the rest from the level that holds ``resident_bytes`` (the working set), whose
latency the kernel waits on unless it reads nothing but those hits (``cold_read_bytes`` = 0);
a kernel whose critical path waits on further dependent DRAM round trips (one CTA per row
looping over it: each loop step waits for its loads) adds them at the spec's DRAM latency; and
every kernel pays the fixed device overhead (launch ramp and tail), counted in SM cycles:

    GPU:   t_k = max(latency + round_trips * DRAM latency
                     + ((bytes - hot) / bandwidth + hot / L2 bandwidth) / stream_efficiency,
                     flops / (vector_peak * vector_efficiency)) + kernel_overhead
    kernel_overhead = kernel_overhead_cycles / SM clock (:func:`kernel_overhead_s`)

(Williams et al., "Roofline", CACM 2009, for the max; Hockney 1994 for the latency + size/bandwidth
ramp.)
"""

from __future__ import annotations

import numpy as np

from sim.cost.gpu_params import GpuParams, kernel_overhead_s
from sim.cost.roofline import KernelTime, kernel_time, serving_level, serving_levels, stream_time_s
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
    hot_bytes: float | np.ndarray = 0.0,
    cold_read_bytes: float | np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """GPU memory-bound kernel times (s) for arrays of byte and FLOP counts (see module doc).

    ``round_trips``: dependent main-memory round trips the kernel's critical path makes besides
    the stream's own (a kernel that loops over a row with one CTA per row waits once per loop
    step; a row reduction adds one before the normalizing pass), at the spec's DRAM latency.
    ``hot_bytes``: of ``nbytes``, those a recent kernel left in L2; ``resident_bytes`` (default
    ``nbytes``): the working set whose level serves the rest. ``cold_read_bytes``: the reads
    among the rest; a kernel with none (it reads only hot bytes and writes, which the write-back
    L2 absorbs) waits on the latency of the level its own bytes fit in, not the working set's.
    """
    nbytes = np.asarray(nbytes, dtype=float)
    resident = nbytes if resident_bytes is None else np.asarray(resident_bytes, dtype=float)
    hot = np.clip(np.asarray(hot_bytes, dtype=float), 0.0, nbytes)
    t_memory = (stream_time_s(spec, nbytes - hot, resident, params.stream_efficiency)
                + round_trips * spec.main_memory.latency_s)
    if cold_read_bytes is not None:
        own = np.minimum(nbytes, resident)
        waits = _latency(spec, own) - _latency(spec, resident)
        t_memory = t_memory + np.where(np.asarray(cold_read_bytes) > 0, 0.0, waits)
    if np.any(hot > 0) and len(spec.memory) > 1:
        t_memory = t_memory + hot / (spec.memory_bandwidth(spec.memory[-2])
                                     * params.stream_efficiency)
    rate = spec.compute.vector_peak(dtype) * params.vector_efficiency
    t_compute = np.asarray(flops, dtype=float) / rate
    t = np.maximum(t_memory, t_compute) + kernel_overhead_s(spec, params, clock_mode)
    return {"t_s": t, "t_memory_s": t_memory, "t_compute_s": t_compute}


def _latency(spec: HardwareSpec, resident: np.ndarray) -> np.ndarray:
    """Latency of the level that holds ``resident`` bytes, per row."""
    out = np.zeros(np.shape(resident))
    for level, mask in serving_levels(spec, resident):
        out = np.where(mask, level.latency_s, out)
    return out


def vector_time(
    spec: HardwareSpec,
    *,
    flops: float,
    bytes_moved: float,
    dtype: str,
    params: GpuParams | None = None,
    hot_bytes: float = 0.0,
    resident_bytes: float | None = None,
    cold_read_bytes: float | None = None,
) -> KernelTime:
    """One memory-bound kernel: the GPU model with ``params`` (``hot_bytes`` of its bytes from
    L2, the rest from the level holding ``resident_bytes``, default ``bytes_moved``), else the
    plain roofline."""
    if spec.kind != "gpu" or params is None:
        rate = spec.compute.vector_peak(dtype) * spec.efficiency.vector
        return kernel_time(spec, flops=flops, flops_per_s=rate, bytes_moved=bytes_moved)
    resident = bytes_moved if resident_bytes is None else max(resident_bytes, bytes_moved)
    t_s = float(stream_op_times(spec, params, nbytes=bytes_moved, flops=flops, dtype=dtype,
                                resident_bytes=resident, hot_bytes=hot_bytes,
                                cold_read_bytes=cold_read_bytes)["t_s"])
    level = serving_level(spec, resident)
    bandwidth = spec.memory_bandwidth(level) * params.stream_efficiency
    rate = spec.compute.vector_peak(dtype) * params.vector_efficiency
    hot = min(max(hot_bytes, 0.0), bytes_moved)
    l2 = spec.memory[-2] if len(spec.memory) > 1 else level
    t_memory = (bytes_moved - hot) / bandwidth + hot / (spec.memory_bandwidth(l2)
                                                        * params.stream_efficiency)
    waits_on = level if cold_read_bytes is None or cold_read_bytes > 0 else serving_level(
        spec, min(bytes_moved, resident))  # only hits read: the latency of its own bytes' level
    terms = {"compute": flops / rate, "memory": t_memory,
             "latency": waits_on.latency_s + kernel_overhead_s(spec, params)}
    detail = {"t_compute_s": terms["compute"], "t_memory_s": terms["memory"],
              "t_latency_s": terms["latency"], "flops": flops, "achievable_flops_per_s": rate,
              "bytes": bytes_moved, "memory_level": level.name, "l2_hit_bytes": hot,
              "achievable_bytes_per_s": bandwidth}
    return KernelTime(t_s=t_s, bound=max(terms, key=terms.get), detail=detail)
