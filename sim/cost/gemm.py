"""GEMM time: tile and wave quantization on the matrix engine, bounded by the memory it streams.

A GEMM C[b, m, n] = A[b, m, k] @ B[b, k, n] is cut into output tiles of tile_m x tile_n (the CTA
tile of cuBLAS/CUTLASS on a GPU, a register-blocked micro-kernel on a CPU), and optionally its k
dimension into ``split`` slices (split-K). Each unit (SM, CU, core) computes one tile-slice at a
time, so they run in waves of ``num_units``:

    tiles = b * ceil(m / tile_m) * ceil(n / tile_n) * split
    waves = ceil(tiles / num_units)

A partial last wave or a partial edge tile costs as much as a full one (wave and tile
quantization: NVIDIA, "Matrix Multiplication Background User's Guide", Deep Learning Performance
docs, sections "Tile Quantization" and "Wave Quantization"). Memory traffic is each operand read
once and C written once, the lower bound of a tiled GEMM whose tiles fit on chip (L2 reuse of the
operand panels); split-K adds writing and reading back ``split`` fp32 partial sums of C.

**GPU** (:func:`gemm_times`, vectorized over shapes; parameters in :class:`GpuParams`):

    t_tile    = 2 tile_m tile_n ceil(k / split) / (peak / num_units * matrix_efficiency)
                + tile_overhead_cycles / clock                 (pipeline fill + epilogue per tile)
    t_compute = waves * t_tile
    t_memory  = latency + bytes / (bandwidth * efficiency)    (the level holding the operands;
                efficiency: :func:`operand_stream_efficiency`, Little's law on bytes in flight)
    t_k       = max(t_compute, t_memory) + kernel_overhead * (1 + [split > 1])

The pipelined main loop keeps memory and tensor cores busy together, hence the max (CUTLASS,
"Efficient GEMM in CUDA", section "Software pipelining"); the fixed per-tile cycles are the
prologue that fills the shared-memory pipeline before the first MMA and the epilogue that writes C
(the same doc, "Threadblock-level GEMM"). The split-K reduction is a second kernel. Like a GEMM
library's heuristic the model takes the fastest of: the spec's CTA tile, that tile doubled or
halved in m or n (cuBLAS ships 64..256-wide tiles), each with split-K 1..16 while a slice keeps
``_MIN_K_SLICE`` of k. A dimension smaller than a tile gets a tile shrunk to the next power of two
(at least 16, the MMA m16n8k16 operand edge), as libraries pick narrow tiles for decode shapes.
Small-m GEMMs thus come out memory-bound on the weights, large ones compute-bound with their wave
quantization. Compute runs at the rated tensor clock (``Clocks``); ``clock_mode="default"``
scales it by ``default_clock_fraction``.

**Plain roofline** (CPUs, and GPUs without :class:`GpuParams`): the same tiles and waves against
:func:`kernel_time` at the spec's efficiency, the smallest problems trying halved tiles and
split-K only when the spec's tile leaves units idle.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from sim.cost.gpu_params import (
    GpuParams,
    cycle_clock_hz,
    operand_stream_efficiency,
    tensor_rate_scale,
)
from sim.cost.roofline import KernelTime, kernel_time, stream_time_s
from sim.hardware import HardwareSpec
from sim.units import DTYPE_BYTES

__all__ = ["gemm_time", "gemm_shape", "gemm_times"]

_MIN_TILE = 8  # narrowest MMA operand edge (e.g. m8n8k4 on NVIDIA tensor cores), CPU path
_GPU_MIN_TILE = 16  # m16n8k16 MMA: a 16-row edge is the narrowest a tensor-core tile gets
_MIN_K_SLICE = 256  # a split-K slice shorter than this costs more in reduction than it saves
_MAX_SPLIT = 16
_PARTIAL_BYTES = 4  # split-K partial sums are accumulated in fp32
_TILE_SCALES = ((2, 1), (1, 1), (1, 0.5), (0.5, 0.5))


def gemm_shape(attrs: Mapping[str, Any]) -> tuple[int, int, int, int]:
    """(b, m, n, k) from an op's attrs; b defaults to 1."""
    return int(attrs.get("b", 1)), int(attrs["m"]), int(attrs["n"]), int(attrs["k"])


def gemm_times(
    spec: HardwareSpec,
    params: GpuParams,
    *,
    b: np.ndarray,
    m: np.ndarray,
    n: np.ndarray,
    k: np.ndarray,
    dtype: str,
    clock_mode: str = "default",
    resident_bytes: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """GPU GEMM kernel times (s) for arrays of shapes; see the module doc.

    ``resident_bytes`` is the working set that decides which memory level serves the operands
    (default: this GEMM's own bytes; a benchmark that cycles several weight matrices passes their
    total). Returns ``t_s`` and the chosen config: ``tile_m``, ``tile_n``, ``split_k``, ``waves``,
    ``tiles``, ``t_compute_s``, ``t_memory_s``.
    """
    b, m, n, k = (np.asarray(x, dtype=float) for x in np.broadcast_arrays(b, m, n, k))
    width = DTYPE_BYTES[dtype]
    shape = {"b": b, "m": m, "n": n, "k": k, "read": b * (m * k + k * n) * width,
             "write": b * m * n * width}
    resident = (shape["read"] + shape["write"] if resident_bytes is None
                else np.asarray(resident_bytes, float))
    rate_per_unit = (spec.compute.matrix_peak(dtype) * tensor_rate_scale(params, clock_mode)
                     * _simt_clock_scale(spec, dtype) * params.matrix_efficiency
                     / spec.compute.num_units)
    t_overhead = params.tile_overhead_cycles / cycle_clock_hz(spec, clock_mode)
    best: dict[str, np.ndarray] | None = None
    for tile_m, tile_n, split in _gpu_configs(spec):
        config = _config_times(spec, params, shape, resident, (tile_m, tile_n, split),
                               rate_per_unit, t_overhead)
        if best is None:
            best = config
            full_wave = config["tiles"] >= spec.compute.num_units  # the default tile fills it
        else:
            best = _keep_faster(best, config, ~full_wave)
    return best


def _config_times(spec, params, shape, resident, config, rate_per_unit, t_overhead) -> dict:
    """Times of one (tile_m, tile_n, split) config for every row (see the module doc)."""
    (tile_m, tile_n, split), units = config, spec.compute.num_units
    b, m, n, k = shape["b"], shape["m"], shape["n"], shape["k"]
    tm, tn = _gpu_tile(m, tile_m), _gpu_tile(n, tile_n)
    k_slice = np.ceil(k / split)
    tiles = b * np.ceil(m / tm) * np.ceil(n / tn) * split
    waves = np.ceil(tiles / units)
    efficiency = operand_stream_efficiency(spec, params, np.minimum(tiles, units))
    partials = 2.0 * split * b * m * n * _PARTIAL_BYTES if split > 1 else 0.0
    mainloop = waves * 2.0 * tm * tn * k_slice / rate_per_unit
    if spec.compute.gemm_persistent:  # fills once; epilogues overlap the next tile's main loop
        t_compute = mainloop + t_overhead
        t_memory = stream_time_s(spec, shape["read"] + shape["write"] + partials, resident,
                                 efficiency)
        t_body = np.maximum(t_compute, t_memory)
    else:
        t_compute = mainloop + waves * t_overhead
        t_memory = stream_time_s(spec, shape["read"], resident, efficiency)
        latency = stream_time_s(spec, 0.0, resident, 1.0)  # the write's trip overlaps the reads'
        t_write = stream_time_s(spec, shape["write"] + partials, resident + partials,
                                efficiency) - latency
        t_body = np.maximum(t_compute, t_memory) + t_write
    kernels = 2.0 if split > 1 else 1.0  # split-K reduces in a second kernel
    t = t_body + kernels * params.kernel_overhead_s
    t = np.where((split == 1) | (k_slice >= _MIN_K_SLICE), t, np.inf)
    return {"t_s": t, "tile_m": tm, "tile_n": tn, "split_k": np.full(t.shape, split),
            "waves": waves, "tiles": tiles, "t_compute_s": t_compute, "t_memory_s": t_memory}


def _simt_clock_scale(spec: HardwareSpec, dtype: str) -> float:
    """FP32 GEMMs run on the CUDA cores, whose datasheet peak is quoted at the max clock (H100:
    132 SMs x 256 FLOP/clk x 1.98 GHz = 67 TFLOP/s); a dense load runs at the rated tensor clock
    (``Clocks.tensor_hz``), so the SIMT rate scales by tensor_hz / clock_hz."""
    clocks = spec.compute.clocks
    if dtype != "fp32" or clocks is None:
        return 1.0
    return min(1.0, clocks.tensor_hz / spec.compute.clock_hz)


def _gpu_configs(spec: HardwareSpec) -> Iterator[tuple[int, int, int]]:
    c = spec.compute
    seen = set()
    for sm, sn in _TILE_SCALES:
        tile = (max(_GPU_MIN_TILE, int(c.gemm_tile_m * sm)), max(_GPU_MIN_TILE,
                                                                  int(c.gemm_tile_n * sn)))
        if tile in seen:
            continue
        seen.add(tile)
        split = 1
        while split <= _MAX_SPLIT:
            yield (*tile, split)
            split *= 2


def _gpu_tile(size: np.ndarray, tile: int) -> np.ndarray:
    """Tile edge per row: ``tile``, or the next power of two >= size (at least 16) if smaller."""
    narrow = np.exp2(np.ceil(np.log2(np.maximum(size, 1.0))))
    return np.where(size >= tile, float(tile), np.maximum(_GPU_MIN_TILE, narrow))


def _keep_faster(best: dict[str, np.ndarray], other: dict[str, np.ndarray],
                 allowed: np.ndarray) -> dict:
    faster = allowed & (other["t_s"] < best["t_s"])  # strict: ties keep the simpler config
    return {key: np.where(faster, other[key], best[key]) for key in best}


def gemm_time(
    spec: HardwareSpec,
    *,
    b: int,
    m: int,
    n: int,
    k: int,
    dtype: str,
    bytes_moved: float | None = None,
    params: GpuParams | None = None,
    clock_mode: str = "default",
) -> KernelTime:
    """Time of one GEMM kernel of shape (b, m, n, k) in ``dtype`` on ``spec``.

    With ``params`` on a GPU: the GPU model above; otherwise the plain tiled roofline (CPU path).
    """
    if spec.kind == "gpu" and params is not None:
        return _gpu_kernel(spec, params, b, m, n, k, dtype, clock_mode)
    if bytes_moved is None:
        bytes_moved = b * (m * k + k * n + m * n) * DTYPE_BYTES[dtype]
    best: KernelTime | None = None
    for tile_m, tile_n, split in _configs(spec, m, n, k):
        kernel = _config_time(spec, b, m, n, k, dtype, bytes_moved, tile_m, tile_n, split)
        if best is None or kernel.t_s < best.t_s:  # strict: ties keep the simpler config
            best = kernel
    return best


def _gpu_kernel(spec, params, b, m, n, k, dtype, clock_mode) -> KernelTime:
    r = {key: float(v) for key, v in gemm_times(spec, params, b=b, m=m, n=n, k=k, dtype=dtype,
                                                clock_mode=clock_mode).items()}
    useful = 2.0 * b * m * n * k
    quantized = r["waves"] * spec.compute.num_units * 2.0 * r["tile_m"] * r["tile_n"] * math.ceil(
        k / r["split_k"])
    bound = "compute" if r["t_compute_s"] >= r["t_memory_s"] else "memory"
    detail = {
        "t_compute_s": r["t_compute_s"], "t_memory_s": r["t_memory_s"],
        "t_latency_s": params.kernel_overhead_s, "flops": useful,
        "achievable_flops_per_s": spec.compute.matrix_peak(dtype) * params.matrix_efficiency,
        "bytes": b * (m * k + k * n + m * n) * DTYPE_BYTES[dtype],
        "memory_level": spec.main_memory.name,
        "achievable_bytes_per_s": spec.memory_bandwidth(spec.main_memory)
        * operand_stream_efficiency(spec, params),
        "tiles": int(r["tiles"]), "waves": int(r["waves"]),
        "tile": f"{int(r['tile_m'])}x{int(r['tile_n'])}", "split_k": int(r["split_k"]),
        "useful_flops": useful, "quantization_efficiency": useful / quantized,
        "clock_mode": clock_mode,
    }
    return KernelTime(t_s=r["t_s"], bound=bound, detail=detail)


def _configs(spec: HardwareSpec, m: int, n: int, k: int) -> Iterator[tuple[int, int, int]]:
    c = spec.compute
    base = (_tile(m, c.gemm_tile_m), _tile(n, c.gemm_tile_n))
    if math.ceil(m / base[0]) * math.ceil(n / base[1]) >= c.num_units:
        yield (*base, 1)  # at least one full wave: the library's default tile
        return
    tiles = {(_tile(m, c.gemm_tile_m // dm), _tile(n, c.gemm_tile_n // dn))
             for dm in (1, 2) for dn in (1, 2)}
    for tile_m, tile_n in sorted(tiles, key=lambda t: (-t[0] * t[1], -t[0])):
        split = 1
        while split <= _MAX_SPLIT and (split == 1 or k // split >= _MIN_K_SLICE):
            yield tile_m, tile_n, split
            split *= 2


def _config_time(spec, b, m, n, k, dtype, bytes_moved, tile_m, tile_n, split) -> KernelTime:
    c = spec.compute
    tiles = b * math.ceil(m / tile_m) * math.ceil(n / tile_n) * split
    waves = math.ceil(tiles / c.num_units)
    peak = c.matrix_peak(dtype) * spec.efficiency.matrix
    quantized_flops = waves * c.num_units * 2.0 * tile_m * tile_n * math.ceil(k / split)
    partials = 2 * split * b * m * n * _PARTIAL_BYTES if split > 1 else 0
    kernel = kernel_time(spec, flops=quantized_flops, flops_per_s=peak,
                         bytes_moved=bytes_moved + partials)
    useful = 2.0 * b * m * n * k
    kernel.detail.update(
        tiles=tiles,
        waves=waves,
        tile=f"{tile_m}x{tile_n}",
        split_k=split,
        useful_flops=useful,
        quantization_efficiency=useful / quantized_flops if quantized_flops else 1.0,
    )
    return kernel


def _tile(size: int, tile: int) -> int:
    """The tile edge used for a dimension of ``size``: the given tile, or a narrower one."""
    tile = max(tile, _MIN_TILE)
    if size >= tile:
        return tile
    return min(tile, max(_MIN_TILE, 1 << (size - 1).bit_length()))

