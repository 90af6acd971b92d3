"""GEMM time: tile and wave quantization on the matrix engine, bounded by the roofline.

A GEMM C[b, m, n] = A[b, m, k] @ B[b, k, n] is cut into output tiles of tile_m x tile_n (the CTA
tile of cuBLAS/CUTLASS on a GPU, a register-blocked micro-kernel on a CPU). Each unit (SM, CU,
core) computes one tile at a time, so tiles run in waves of ``num_units``:

    tiles = b * ceil(m / tile_m) * ceil(n / tile_n)
    waves = ceil(tiles / num_units)
    t_compute = waves * (2 * tile_m * tile_n * k) / (peak_per_unit * efficiency)

A partial last wave or a partial edge tile costs as much as a full one (wave and tile
quantization: NVIDIA, "Matrix Multiplication Background User's Guide", Deep Learning Performance
docs, sections "Tile Quantization" and "Wave Quantization"). A dimension smaller than the tile gets
a tile shrunk to the next power of two (at least 8), as GEMM libraries select narrow tiles for
skinny (decode-like) shapes instead of padding m = 1 to 128. Memory traffic is each operand read
once and C written once, the lower bound of a tiled GEMM whose tiles fit on chip.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sim.cost.roofline import KernelTime, kernel_time
from sim.hardware import HardwareSpec
from sim.units import DTYPE_BYTES

__all__ = ["gemm_time", "gemm_shape"]


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
    """Time of one GEMM kernel of shape (b, m, n, k) in ``dtype`` on ``spec``."""
    c = spec.compute
    tile_m, tile_n = _tile(m, c.gemm_tile_m), _tile(n, c.gemm_tile_n)
    tiles = b * math.ceil(m / tile_m) * math.ceil(n / tile_n)
    waves = math.ceil(tiles / c.num_units)
    peak = c.matrix_peak(dtype) * spec.efficiency.matrix
    quantized_flops = waves * c.num_units * 2.0 * tile_m * tile_n * k
    if bytes_moved is None:
        bytes_moved = b * (m * k + k * n + m * n) * DTYPE_BYTES[dtype]
    kernel = kernel_time(spec, flops=quantized_flops, flops_per_s=peak, bytes_moved=bytes_moved)
    useful = 2.0 * b * m * n * k
    kernel.detail.update(
        tiles=tiles,
        waves=waves,
        tile=f"{tile_m}x{tile_n}",
        useful_flops=useful,
        quantization_efficiency=useful / quantized_flops if quantized_flops else 1.0,
    )
    return kernel


def _tile(size: int, tile: int) -> int:
    """The tile edge used for a dimension of ``size``: the spec's tile, or a narrower one."""
    if size >= tile:
        return tile
    return min(tile, max(_MIN_TILE, 1 << (size - 1).bit_length()))


_MIN_TILE = 8  # narrowest MMA operand edge (e.g. m8n8k4 on NVIDIA tensor cores)
