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

**GPU** (:func:`gemm_times`, vectorized over shapes; parameters in :class:`GpuParams`). The
library's kernel menu is the spec's ``gemm_tile.menu`` (CTA tiles tile_m x tile_n with main-loop
step bk, from CUTLASS's generated kernel list for the architecture; ``sharing`` SMs split one
operand's loads: TMA multicast in a 2-CTA cluster on sm90, 2-SM MMAs on sm100). Each menu tile
with split-K 1..16 is a candidate; like a library heuristic tuned by profiling, the fastest wins:

    t_iter    = max(2 tile_m tile_n bk / (peak / num_units * matrix_efficiency),
                    iteration_cycles / clock)          (MMA work, or the iteration's latency floor)
    t_compute = waves * ceil(k_slice / bk) * t_iter + fill
    t_read    = latency + unique operand bytes / (bandwidth * efficiency)   (level holding them;
                efficiency: :func:`operand_stream_efficiency`, Little's law on bytes in flight)
    t_feed    = waves * active SMs * (tile_m + tile_n - shared) * k_slice * width
                / (L2 bandwidth * stream_efficiency)                (the SMs' operand loads)
    t_write   = (C + split-K partials) / (DRAM bandwidth * stream_efficiency)
    t_k       = max(t_compute, t_read, t_feed) + t_write + kernels * kernel_overhead_cycles / clock

The pipelined main loop keeps memory and tensor cores busy together, hence the max (CUTLASS,
"Efficient GEMM in CUDA", section "Software pipelining"). Every CTA re-reads its A and B panels
from L2, so a tile of intensity tile_m tile_n / (tile_m + tile_n) FLOP per operand element is
bounded by the L2-to-SM bandwidth ("Matrix Multiplication Background", section "Dimension
Quantization Effects" / arithmetic intensity of a tile); ``shared`` = (1 - 1/sharing) times the
wider edge, which the sharing SMs load once. The fill (``tile_overhead_cycles``: the prologue
that fills the shared-memory pipeline and the epilogue that writes C, "Threadblock-level GEMM")
is paid per wave by multistage kernels; persistent TMA kernels (``gemm_tile.persistent``) fill
once and overlap each epilogue and C's write with the next tile's main loop. The written C drains
to DRAM: L2 is write-back, and the next kernels' operands evict it. The split-K reduction is a
second kernel. A dimension smaller than a tile gets a tile shrunk to the next power of two (at
least 16, the MMA m16n8k16 operand edge), as libraries pick narrow tiles for decode shapes.
Compute runs at the rated tensor clock (``Clocks``); ``clock_mode="default"`` scales it by
``default_clock_fraction``; cycle counts run at :func:`cycle_clock_hz`.

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
    kernel_overhead_s,
    operand_stream_efficiency,
    tensor_rate_scale,
)
from sim.cost.roofline import KernelTime, kernel_time, stream_time_s
from sim.hardware import HardwareSpec
from sim.units import DTYPE_BYTES

__all__ = ["gemm_time", "gemm_shape", "gemm_times", "gemm_menu"]

_MIN_TILE = 8  # narrowest MMA operand edge (e.g. m8n8k4 on NVIDIA tensor cores), CPU path
_GPU_MIN_TILE = 16  # m16n8k16 MMA: a 16-row edge is the narrowest a tensor-core tile gets
_MIN_K_SLICE = 256  # a split-K slice shorter than this costs more in reduction than it saves
_MAX_SPLIT = 16
_PARTIAL_BYTES = 4  # split-K partial sums are accumulated in fp32
_DEFAULT_BK = 32  # main-loop step of a spec without a menu (CUTLASS 2.x 16-bit tiles)
_TILE_SCALES = ((2, 1), (1, 1), (1, 0.5), (0.5, 0.5))  # menu of a spec that lists none


def gemm_shape(attrs: Mapping[str, Any]) -> tuple[int, int, int, int]:
    """(b, m, n, k) from an op's attrs; b defaults to 1."""
    return int(attrs.get("b", 1)), int(attrs["m"]), int(attrs["n"]), int(attrs["k"])


def gemm_menu(spec: HardwareSpec) -> tuple[tuple[int, int, int, int], ...]:
    """The spec's (tile_m, tile_n, bk, sharing) menu; without one, its tile doubled and halved."""
    c = spec.compute
    if c.gemm_menu:
        return c.gemm_menu
    tiles = dict.fromkeys((max(_GPU_MIN_TILE, int(c.gemm_tile_m * sm)),
                           max(_GPU_MIN_TILE, int(c.gemm_tile_n * sn))) for sm, sn in _TILE_SCALES)
    return tuple((tm, tn, _DEFAULT_BK, 1) for tm, tn in tiles)


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
    shape = {"b": b, "m": m, "n": n, "k": k, "width": width,
             "read": b * (m * k + k * n) * width, "write": b * m * n * width}
    shape["resident"] = (shape["read"] + shape["write"] if resident_bytes is None
                         else np.asarray(resident_bytes, float))
    clock = cycle_clock_hz(spec, clock_mode)
    rates = {"mma": spec.compute.matrix_peak(dtype) * tensor_rate_scale(params, clock_mode)
             * _simt_clock_scale(spec, dtype) * params.matrix_efficiency / spec.compute.num_units,
             "fill_s": params.tile_overhead_cycles / clock,
             "iteration_s": params.iteration_cycles / clock,
             "kernel_s": kernel_overhead_s(spec, params, clock_mode)}
    best: dict[str, np.ndarray] | None = None
    for config in _gpu_configs(spec):
        times = _config_times(spec, params, shape, config, rates)
        best = times if best is None else _keep_faster(best, times)
    return best


def _config_times(spec, params, shape, config, rates) -> dict:
    """Times of one (tile_m, tile_n, bk, sharing, split) config for every row (module doc)."""
    (tile_m, tile_n, bk, sharing, split), units = config, spec.compute.num_units
    b, m, n, k = shape["b"], shape["m"], shape["n"], shape["k"]
    tm, tn = _gpu_tile(m, tile_m), _gpu_tile(n, tile_n)
    k_slice = np.ceil(k / split)
    tiles = b * np.ceil(m / tm) * np.ceil(n / tn) * split
    waves = np.ceil(tiles / units)
    active = np.minimum(tiles, units)
    t_iter = np.maximum(2.0 * tm * tn * bk / rates["mma"], rates["iteration_s"])
    mainloop = waves * np.ceil(k_slice / bk) * t_iter
    partials = 2.0 * split * b * m * n * _PARTIAL_BYTES if split > 1 else 0.0
    t_read = stream_time_s(spec, shape["read"], shape["resident"],
                           operand_stream_efficiency(spec, params, active))
    t_feed = _feed_time_s(spec, params, waves * active * k_slice * shape["width"]
                          * (tm + tn - (1.0 - 1.0 / sharing) * np.maximum(tm, tn)))
    t_write = (shape["write"] + partials) / (spec.memory_bandwidth(spec.main_memory)
                                             * params.stream_efficiency)
    fill = rates["fill_s"]
    if spec.compute.gemm_persistent:  # fills once; epilogues overlap the next tile's main loop
        t_compute = mainloop + fill
        t_memory = t_read + t_write
        t_body = np.maximum(np.maximum(t_compute, t_memory), t_feed)
    else:
        t_compute = mainloop + waves * fill
        t_memory = t_read
        t_body = np.maximum(np.maximum(t_compute, t_memory), t_feed) + t_write
    kernels = 2.0 if split > 1 else 1.0  # split-K reduces in a second kernel
    t = t_body + kernels * rates["kernel_s"]
    t = np.where((split == 1) | (k_slice >= _MIN_K_SLICE), t, np.inf)
    return {"t_s": t, "tile_m": tm, "tile_n": tn, "split_k": np.full(t.shape, split),
            "waves": waves, "tiles": tiles, "t_compute_s": t_compute, "t_memory_s": t_memory}


def _feed_time_s(spec: HardwareSpec, params: GpuParams, nbytes: np.ndarray) -> np.ndarray:
    """Seconds the SMs need to load ``nbytes`` of operand panels from L2 (the level past the
    SM-local one); zero on a spec without a separate L2."""
    if len(spec.memory) < 3:
        return np.zeros_like(nbytes)
    return nbytes / (spec.memory_bandwidth(spec.memory[1]) * params.stream_efficiency)


def _simt_clock_scale(spec: HardwareSpec, dtype: str) -> float:
    """FP32 GEMMs run on the CUDA cores, whose datasheet peak is quoted at the max clock (H100:
    132 SMs x 256 FLOP/clk x 1.98 GHz = 67 TFLOP/s); a dense load runs at the rated tensor clock
    (``Clocks.tensor_hz``), so the SIMT rate scales by tensor_hz / clock_hz."""
    clocks = spec.compute.clocks
    if dtype != "fp32" or clocks is None:
        return 1.0
    return min(1.0, clocks.tensor_hz / spec.compute.clock_hz)


def _gpu_configs(spec: HardwareSpec) -> Iterator[tuple[int, int, int, int, int]]:
    for tile in gemm_menu(spec):
        split = 1
        while split <= _MAX_SPLIT:
            yield (*tile, split)
            split *= 2


def _gpu_tile(size: np.ndarray, tile: int) -> np.ndarray:
    """Tile edge per row: ``tile``, or the next power of two >= size (at least 16) if smaller."""
    narrow = np.exp2(np.ceil(np.log2(np.maximum(size, 1.0))))
    return np.where(size >= tile, float(tile), np.maximum(_GPU_MIN_TILE, narrow))


def _keep_faster(best: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> dict:
    faster = other["t_s"] < best["t_s"]  # strict: ties keep the earlier (larger) config
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
        "t_latency_s": kernel_overhead_s(spec, params, clock_mode), "flops": useful,
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

