"""Fit the CPU sub-model (:mod:`sim.cost.cpu`) to micro-benchmark points, in stages.

Only points of the ``fit`` split are used. Each stage moves a few parameters of one op kind and
minimizes a robust loss (``soft_l1``, scale 0.1, i.e. about 10 %) of log(predicted / measured)
with ``scipy.optimize.least_squares`` inside physical bounds, starting from round a-priori
values (:data:`START`), so a re-fit never depends on an earlier fit:

1. ``dispatch``: t_pre from the ``view`` points (a view is dispatch only).
2. ``stream``: achieved bandwidth per memory level (the last-level cache at this VM's share
   of it, ``cpu_fit_stream.EFFECTIVE_LLC_BYTES``), per-category floors, per-op element times,
   the strided-copy fraction and the page-fault bandwidth, on every point made of streaming
   ops (elementwise, reduction, norm, copy, embedding). An element time whose compute term
   binds on no fit point is dropped (0).
3. ``gemm``: per dtype, the thirteen GEMM coefficients on the GEMM points (views and any streaming
   op of a point priced with stages 1-2).
4. ``attention``: per dtype, the ten attention coefficients on the SDPA points.

Beside the suite's points, the fit takes *in-situ* points (:mod:`validation.cpu_in_situ`): the
GEMM and attention ops of the calibration models' real steps, each timed inside its step and
compared with its t_calc alone (:attr:`Point.kernel_only`). They run warm, so they pin the warm
terms at a model's shapes and leave the suite's first-call excess to ``cold_call``; in each
fit they together weigh as much as the suite's points (:func:`_weights`).

A point is predicted as the sum of its ops' t_pre + t_calc over its timed calls (:class:`Point`):
the first call of each sample block runs cold (the timer interleaves the points, so every other
point ran since: :data:`COLD`), each further first touch of a rotated buffer set in the block
reads it from main memory (:data:`EVICTED`), the others run with the point's residency (the
reuse distance of its rotated buffers). 404 of the 1447 points of a full sweep take longer than
a sample block (0.2 ms) and so ran cold every time: priced warm, their time went into the
fitted element times and bandwidths. ``CpuCalibration.framework_s`` is not fitted here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from sim.cost.cpu import (
    Residency,
    attention_seconds,
    attention_terms,
    cpu_op_cost,
    gemm_key,
    gemm_seconds,
    gemm_terms,
)
from sim.cpu_calibration import (
    FLOOR_CATEGORIES,
    AttentionCoefficients,
    CpuCalibration,
    GemmCoefficients,
    StreamLevel,
)
from sim.hardware import HardwareSpec
from sim.trace import Op
from validation.cpu_fit_stream import FIT_LOSS_SCALE, fit_stream, robust_loss
from validation.cpu_in_situ import IN_SITU_FAMILY
from validation.microbench.suite import points_to_ops

__all__ = ["Point", "COLD", "EVICTED", "load_points", "start_calibration", "fit_cpu",
           "predict_points", "FIT_LOSS_SCALE", "MMAP_THRESHOLD_BYTES"]

MIN_OP_POINTS = 12  # a GEMM op gets its own coefficients from this many fit points
#: Starts of the attention fit's cache lines in flight, the lowest robust loss kept. The max()
#: of bandwidth and latency has a kink: where the latency binds on no point, the lines get no
#: gradient, so each start first fits the other coefficients with the lines held (2026-11-29,
#: on the measurements of 06:29 UTC: one joint solve from 32 lines ended at 106, fp32 held-out
#: p90 40 %; from the other coefficients' solution it ended at 49 lines, 23 %).
KV_LINES_STARTS = (16.0, 32.0, 64.0, 128.0)
#: Starts (s) of the attention fit's ``cold_call``, held with each of :data:`KV_LINES_STARTS`
#: while the other coefficients fit first: a cold call also reads K and V from main memory,
#: whose latency bound the lines set, so the two trade off (on exact synthetic data, fitted
#: with only the lines held, ``cold_call`` stalled at 0 us for every start of the lines).
COLD_CALL_STARTS = (0.0, 10e-6, 50e-6)
#: glibc's largest dynamic mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX, mallopt(3)).
MMAP_THRESHOLD_BYTES = 32 * 2**20
_MIB = 2**20


#: Where a sample's first call finds its data: every other point of the suite ran since
#: (``validation.microbench.timer`` interleaves them), so nothing of it is left in any cache.
COLD = Residency(math.inf, math.inf, cold=True)


#: Where a block's first touch of a rotated buffer set finds it when the call is not the
#: block's first: the rest of the round evicted the set, the code and library state are warm.
EVICTED = Residency(math.inf, math.inf)


@dataclass(frozen=True)
class Point:
    """One benchmark point: its ops, residency and measured time (s).

    A sample block of ``block`` calls cycles over ``copies`` buffer sets (the rotation of
    ``validation.microbench.cases``), and every other point of the round ran since its last
    block. So the block's first call runs cold (:data:`COLD`), ``cold_share`` = 1 / block of
    the calls; each further call up to the copies-th touches a set the round evicted
    (``evicted``: main memory for what rotates, warm for a cold case's shared activations),
    ``evicted_share`` = (min(block, copies) - 1) / block; the rest find their set where the
    ``residency`` (the reuse distance of the rotation) puts it. A pool of cold weights longer
    than the block is never re-used within it: all of its calls read main memory (measured
    here 2026-11-29: a 174 x 148 fp32 gemv cycling 64 weight copies, 6.7 MB, took 3.4 us in a
    loop and 8-9 us timed in blocks of 45-48 calls)."""

    key: str
    kind: str  # the category it is reported under
    split: str  # fit | heldout
    ops: tuple[Op, ...]
    residency: Residency
    measured_s: float
    cold_share: float = 0.0
    evicted_share: float = 0.0
    evicted: Residency = EVICTED
    #: Timed inside a model's step (``validation.cpu_in_situ``): the time is the op's t_calc.
    kernel_only: bool = False

    def calls(self) -> tuple[tuple[float, Residency], ...]:
        """(share of the timed calls, residency) of the warm, evicted and cold calls."""
        warm = max(1.0 - self.cold_share - self.evicted_share, 0.0)
        return tuple((w, r) for w, r in ((warm, self.residency),
                                         (self.evicted_share, self.evicted),
                                         (self.cold_share, COLD)) if w > _NO_SHARE)


_NO_SHARE = 1e-12


def load_points(table: pd.DataFrame) -> list[Point]:
    """Points of a suite table (see ``validation.microbench.suite``); a table without the
    ``block`` column (no record of how samples were timed) has no cold or evicted calls, one
    without ``copies`` or ``cold`` one buffer set that rotates whole."""
    def column(name: str, default) -> pd.Series:
        return table[name] if name in table else pd.Series(default, index=table.index)

    points = []
    for row, ops, block, copies, weights_only, family in zip(
            table.itertuples(), points_to_ops(table), column("block", np.inf),
            column("copies", 1), column("cold", False), column("family", ""), strict=True):
        block = max(float(block), 1.0)
        residency = Residency(float(row.reuse_bytes), float(row.weight_reuse_bytes))
        points.append(Point(
            key=row.key, kind=row.category, split=row.split, ops=ops,
            measured_s=float(row.measured_s), residency=residency, cold_share=1.0 / block,
            evicted_share=(min(block, float(copies)) - 1.0) / block,
            evicted=(Residency(residency.reuse_bytes, math.inf) if _true(weights_only)
                     else EVICTED), kernel_only=family == IN_SITU_FAMILY))
    return points


def _true(value) -> bool:
    """A CSV cell's truth (``True``, ``true``, 1)."""
    return str(value).strip().lower() in ("true", "1")


def start_calibration(spec: HardwareSpec, threads: int) -> CpuCalibration:
    """Round a-priori values: 60 % of each level's datasheet bandwidth, 1 us floors, 1 us
    dispatch (the 0.91 us of the datasheet spec), no element times, 0.5 strided, GEMM at the
    spec's matrix efficiency, and 3.3 GB/s of page faults: measured on this machine 2026-11-29,
    ``x.clone()`` of fresh 33-96 MiB fp32 tensors took 11.6-34.8 ms (5.7 GB/s of copy), of
    which the copy itself is ~1/7 at 40 GB/s (the sweep keeps tensors below the mmap threshold,
    so this value is not re-fitted unless a point crosses it)."""
    spec = spec.with_units(threads)
    levels = tuple(StreamLevel(lv.name, lv.capacity_bytes if i < len(spec.memory) - 1
                               else math.inf, 0.6 * spec.memory_bandwidth(lv), lv.latency_s)
                   for i, lv in enumerate(spec.memory))
    rate = {dt: spec.compute.matrix_peak(dt) * spec.efficiency.matrix for dt in ("fp32", "bf16")}
    gemm = {dt: GemmCoefficients(5e-6, 1e-10, 1e-10, 1e-10, r, 2e-6, 1e-10, 1e-9, 0.5, 1e-5,
                                 gemv_dram_row_s=5e-8) for dt, r in rate.items()}
    attention = {dt: AttentionCoefficients(5e-6, 1e-7, 1e-7, 1e-9, 1e-10, r, 1e-6, 1e-10,
                                           KV_LINES_STARTS[1], 1e-5) for dt, r in rate.items()}
    return CpuCalibration(threads=threads, dispatch_s=1e-6, levels=levels,
                          fault_threshold_bytes=MMAP_THRESHOLD_BYTES, fault_bytes_per_s=3.3e9,
                          strided_fraction=0.5, floor_s=dict.fromkeys(FLOOR_CATEGORIES, 1e-6),
                          op_floor_s={}, element_s={}, row_s={}, gemm=gemm,
                          attention=attention, vector_bytes=torch_vector_bytes())


#: SIMD width (bytes) of torch's CPU kernels by the capability they were dispatched for.
_CAPABILITY_BYTES = {"AVX512": 64, "AVX2": 32, "SVE256": 32, "NEON": 16, "DEFAULT": 16}


def torch_vector_bytes() -> float:
    """The vector width torch's CPU kernels run with on this machine (what the tail term of
    row-wise ops counts in, :func:`sim.cost.cpu.tail_elements`)."""
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    return float(_CAPABILITY_BYTES.get(capability.split("_")[0], 16))


def predict_points(points: Sequence[Point], spec: HardwareSpec) -> np.ndarray:
    """Predicted time of each point (s) with the CPU sub-model of calibrated ``spec`` (no
    framework term: a micro-benchmark runs no model code)."""
    cal = dataclasses.replace(spec.cpu_calibration, framework_s=0.0)
    return np.array([sum(share * _seconds(cpu_op_cost(op, cal, residency), p)
                         for share, residency in p.calls() for op in p.ops) for p in points])


def _seconds(cost, point: Point) -> float:
    """What ``point``'s time holds of an op's ``cost``: t_calc in situ, else all of it."""
    return cost.t_calc_s if point.kernel_only else cost.total_s


def _least_squares(residuals: Callable[[np.ndarray], np.ndarray], start: np.ndarray,
                   low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Robust fit in units of ``start`` (every parameter ~1 at the start)."""
    scale = np.where(start > 0, start, np.maximum(high, 1e-30) * 1e-3)
    result = least_squares(lambda z: residuals(z * scale), np.clip(start, low, high) / scale,
                           bounds=(low / scale, high / scale), loss="soft_l1",
                           f_scale=FIT_LOSS_SCALE, x_scale="jac")
    return result.x * scale


def fit_dispatch(points: Sequence[Point]) -> float:
    """t_pre (s): the geometric mean of the view points (one view op each)."""
    times = [p.measured_s / len(p.ops) for p in points if p.kind == "view"]
    return float(np.exp(np.mean(np.log(times)))) if times else 1e-6


@dataclass(frozen=True)
class _Design:
    """The (point, op) rows a stage fits, expanded over each point's calls (warm, cold):
    per call its row, share, the time of the point's other ops, the op's model terms and the
    bandwidth of the level serving it; per row the measured seconds."""

    row: np.ndarray
    share: np.ndarray
    fixed: np.ndarray
    terms: dict[str, np.ndarray]
    bandwidth: np.ndarray
    measured: np.ndarray
    weight: np.ndarray

    def log_residuals(self, seconds: np.ndarray) -> np.ndarray:
        """log(predicted / measured) per row, ``seconds`` the fitted op's time per call, times
        the square root of the row's weight."""
        pred = np.bincount(self.row, self.share * (self.fixed + seconds),
                           minlength=len(self.measured))
        return np.log(pred / self.measured) * np.sqrt(self.weight)


def _design(rows, cal: CpuCalibration, terms_of) -> _Design:
    calls = [(i, share, residency, p, op) for i, (p, op) in enumerate(rows)
             for share, residency in p.calls()]
    terms = _stack([terms_of(op, cal, residency) for _, _, residency, _, op in calls])
    return _Design(
        row=np.array([c[0] for c in calls]), share=np.array([c[1] for c in calls]),
        fixed=np.array([_others_s(p, op, cal, residency) for _, _, residency, p, op in calls]),
        terms=terms,
        bandwidth=np.array([cal.levels[int(i)].bandwidth_bytes_per_s for i in terms["level"]]),
        measured=np.array([p.measured_s for p, _ in rows]), weight=_weights(rows))


def _weights(rows) -> np.ndarray:
    """Each row's weight in a fit: the in-situ rows together weigh as much as the suite's."""
    in_situ = np.array([p.kernel_only for p, _ in rows])
    count = int(in_situ.sum())
    if count == 0 or count == len(rows):
        return np.ones(len(rows))
    return np.where(in_situ, (len(rows) - count) / count, 1.0)


def fit_gemm(points: Sequence[Point], cal: CpuCalibration, dtype: str,
             op_name: str | None = None) -> GemmCoefficients:
    """Stage 3 for one dtype, or one GEMM key of it (``mm``, ``addmm_kn``:
    :func:`sim.cost.cpu.gemm_key`), starting from the dtype's fit."""
    rows = [(p, op) for p in points for op in p.ops if op.category == "gemm"
            and op.dtype == dtype and op_name in (None, gemm_key(op))]
    if not rows:
        return cal.gemm[dtype]
    design = _design(rows, cal, gemm_terms)
    c0 = cal.gemm[dtype]
    start = np.array([c0.overhead_s, c0.a_element_s, c0.b_element_s, c0.c_element_s,
                      1 / c0.flops_per_s, c0.gemv_overhead_s, c0.gemv_element_s,
                      c0.gemv_output_s, c0.stream_fraction, c0.cold_call_s,
                      c0.gemv_stream_fraction, c0.dram_call_s, c0.gemv_dram_row_s])

    def coefficients(x):
        return GemmCoefficients(x[0], x[1], x[2], x[3], 1 / x[4], x[5], x[6], x[7], x[8], x[9],
                                x[10], x[11], x[12])

    def residuals(x):
        return design.log_residuals(gemm_seconds(coefficients(x), design.terms,
                                                 design.bandwidth, cal.fault_bytes_per_s))

    return coefficients(_least_squares(
        residuals, start, np.array([0, 0, 0, 0, 1e-14, 0, 0, 0, 0.02, 0, 0.02, 0, 0]),
        np.array([1e-3, 1e-8, 1e-8, 1e-8, 1e-9, 1e-3, 1e-8, 1e-6, 1.0, 1e-3, 1.0, 1e-3, 1e-6])))


def fit_attention(points: Sequence[Point], cal: CpuCalibration,
                  dtype: str) -> AttentionCoefficients:
    """Stage 4 for one dtype (module doc)."""
    rows = [(p, op) for p in points for op in p.ops
            if op.category == "attention" and op.dtype == dtype]
    if not rows:
        return cal.attention[dtype]
    design = _design(rows, cal, attention_terms)
    c0 = cal.attention[dtype]

    def coefficients(x):  # x[9], the cache lines in flight, last: the one held at first
        return AttentionCoefficients(x[0], x[1], x[2], x[3], x[4], 1 / x[5], x[6], x[7], x[9],
                                     cold_call_s=x[8])

    def residuals(x):
        return design.log_residuals(attention_seconds(coefficients(x), design.terms,
                                                      cal.fault_bytes_per_s))

    low = np.array([0, 0, 0, 0, 0, 1e-14, 0, 0, 0, 1.0])
    high = np.array([1e-3, 1e-4, 1e-4, 1e-6, 1e-8, 1e-9, 1e-4, 1e-8, 1e-3, 1e4])
    start = np.array([c0.overhead_s, c0.head_s, c0.block_s, c0.pair_s, c0.kv_element_s,
                      1 / c0.flops_per_s, c0.decode_head_s, c0.decode_kv_element_s,
                      c0.cold_call_s])

    def from_start(lines: float, cold_call: float) -> np.ndarray:
        """The other coefficients fitted with ``lines`` and ``cold_call`` held, then all of
        them together."""
        held = np.append(_least_squares(lambda x: residuals(np.append(x, (cold_call, lines))),
                                        start[:-1], low[:-2], high[:-2]), (cold_call, lines))
        return _least_squares(residuals, held, low, high)

    fits = [from_start(lines, cold) for lines in KV_LINES_STARTS for cold in COLD_CALL_STARTS]
    return coefficients(min(fits, key=lambda x: robust_loss(residuals(x))))


def _others_s(point: Point, main: Op, cal: CpuCalibration, residency: Residency) -> float:
    """Time of a point's ops other than ``main`` plus main's t_pre (none in situ), with the
    current fit."""
    return (0.0 if point.kernel_only else cal.dispatch_s) + sum(
        _seconds(cpu_op_cost(op, cal, residency), point) for op in point.ops if op is not main)


def _stack(rows: list[dict]) -> dict[str, np.ndarray]:
    return {key: np.array([r[key] for r in rows], dtype=float) for key in rows[0]}


def fit_cpu(points: Sequence[Point], spec: HardwareSpec, threads: int) -> CpuCalibration:
    """Every stage (module doc) on the ``fit`` points; the result has no intervals yet."""
    fit = [p for p in points if p.split == "fit"]
    cal = start_calibration(spec, threads)
    cal = dataclasses.replace(cal, dispatch_s=fit_dispatch(fit))
    cal = fit_stream(fit, cal, _least_squares)
    dtypes = sorted({op.dtype for p in fit for op in p.ops
                     if op.category in ("gemm", "attention")} & set(cal.gemm))
    cal = dataclasses.replace(cal, gemm={dt: fit_gemm(fit, cal, dt) for dt in dtypes})
    cal = dataclasses.replace(cal, gemm={**cal.gemm, **_per_op_gemm(fit, cal)})
    return dataclasses.replace(cal, attention={dt: fit_attention(fit, cal, dt) for dt in dtypes})


def _per_op_gemm(points: Sequence[Point], cal: CpuCalibration) -> dict[str, GemmCoefficients]:
    """Coefficients per (GEMM key, dtype) with at least :data:`MIN_OP_POINTS` fit points."""
    counts: dict[tuple[str, str], int] = {}
    for p in points:
        for op in p.ops:
            if op.category == "gemm" and op.dtype in cal.gemm:
                key = (gemm_key(op), op.dtype)
                counts[key] = counts.get(key, 0) + 1
    return {f"{name}.{dtype}": fit_gemm(points, cal, dtype, name)
            for (name, dtype), n in sorted(counts.items()) if n >= MIN_OP_POINTS}
