"""GEMM time: tile and wave quantization on the matrix engine, bounded by the roofline.

A GEMM C[b, m, n] = A[b, m, k] @ B[b, k, n] is cut into output tiles of tile_m x tile_n (the CTA
tile of cuBLAS/CUTLASS on a GPU, a register-blocked micro-kernel on a CPU), and optionally its k
dimension into ``split`` slices (split-K). Each unit (SM, CU, core) computes one tile-slice at a
time, so they run in waves of ``num_units``:

    tiles = b * ceil(m / tile_m) * ceil(n / tile_n) * split
    waves = ceil(tiles / num_units)
    t_compute = waves * (2 * tile_m * tile_n * ceil(k / split)) / (peak_per_unit * efficiency)

A partial last wave or a partial edge tile costs as much as a full one (wave and tile
quantization: NVIDIA, "Matrix Multiplication Background User's Guide", Deep Learning Performance
docs, sections "Tile Quantization" and "Wave Quantization"). Memory traffic is each operand read
once and C written once, the lower bound of a tiled GEMM whose tiles fit on chip; split-K adds
writing and reading back ``split`` fp32 partial sums of C.

Like a GEMM library's heuristic, the model uses the spec's tile when it yields at least one full
wave, and otherwise (a small problem that would leave units idle) picks the fastest of the spec's
tile, tiles halved in m and/or n, and split-K in powers of two while each slice keeps at least
``_MIN_K_SLICE`` of k (CUTLASS "Efficient GEMM in CUDA", sections "Parallelized Reductions" and
"Threadblock-level GEMM"). Large problems keep the large tile: smaller tiles would re-read the
operand panels from L2 more often. A dimension smaller than the tile gets a tile shrunk to the
next power of two (at least 8), as libraries select narrow tiles for skinny, decode-like shapes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from sim.cost.roofline import KernelTime, kernel_time
from sim.hardware import HardwareSpec
from sim.units import DTYPE_BYTES

__all__ = ["gemm_time", "gemm_shape"]

_MIN_TILE = 8  # narrowest MMA operand edge (e.g. m8n8k4 on NVIDIA tensor cores)
_MIN_K_SLICE = 256  # a split-K slice shorter than this costs more in reduction than it saves
_MAX_SPLIT = 16
_PARTIAL_BYTES = 4  # split-K partial sums are accumulated in fp32


def gemm_shape(attrs: Mapping[str, Any]) -> tuple[int, int, int, int]:
    """(b, m, n, k) from an op's attrs; b defaults to 1."""
    return int(attrs.get("b", 1)), int(attrs["m"]), int(attrs["n"]), int(attrs["k"])


def gemm_time(
    spec: HardwareSpec,
    *,
    b: int,
    m: int,
    n: int,
    k: int,
    dtype: str,
    bytes_moved: float | None = None,
) -> KernelTime:
    """Time of one GEMM kernel of shape (b, m, n, k) in ``dtype`` on ``spec`` (fastest config)."""
    if bytes_moved is None:
        bytes_moved = b * (m * k + k * n + m * n) * DTYPE_BYTES[dtype]
    best: KernelTime | None = None
    for tile_m, tile_n, split in _configs(spec, m, n, k):
        kernel = _config_time(spec, b, m, n, k, dtype, bytes_moved, tile_m, tile_n, split)
        if best is None or kernel.t_s < best.t_s:  # strict: ties keep the simpler config
            best = kernel
    return best


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
