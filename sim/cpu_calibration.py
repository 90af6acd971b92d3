"""The fitted parameters of tksim's CPU sub-model (:mod:`sim.cost.cpu`), read from a spec file.

A calibrated CPU spec (written by ``validation.calibrate_cpu``) carries a ``cpu_calibration``
section next to its datasheet numbers. It models eager PyTorch on ``threads`` intra-op threads of
the machine it was measured on; every value cites the calibration run in the file's ``sources``
(host, CPU, torch version, date, sample counts, fit residuals). Layout (units as everywhere in
spec files, ``docs/spec-format.md``; meaning in ``docs/cpu-validation.md``)::

    cpu_calibration:
      source: calibration
      threads: 1
      dispatch: 0.7 us                 # t_pre of every op: Python -> dispatcher -> return
      memory:                          # what torch kernels achieve, innermost level first
        - {level: l2, capacity: 1 MiB, bandwidth: 120 GB/s}   # latency: the spec level's
        - {level: dram, bandwidth: 38 GB/s}
      page_faults: {threshold: 32 MiB, bandwidth: 2.7 GB/s}
      strided_fraction: 0.25           # bandwidth fraction of a strided (transposing) copy
      gather_fraction: 0.4             # bandwidth fraction of an embedding row's first bytes
      gather_ramp: 4 KiB               # bytes of a gathered row before the prefetcher streams
      floor: {elementwise: 1 us, reduction: 1.2 us, ...}       # per category, fixed
      op_floor: {gelu: 4 us, ...}                             # per op (name[.dtype]), fixed
      element_time: {gelu: 0.5 ns, gelu.bf16: 0.3 ns, ...}    # per element, by aten name
      row_time: {_softmax: 40 ns, embedding: 9 ns, ...}       # per row of a row-wise op
      vector_bytes: 64 B               # SIMD width torch's CPU kernels ran with (AVX-512)
      tail_time: {amax: 1.2 ns, ...}   # per element of a row past its last full vector chunk
      gemm: {fp32: {overhead: .., a_element: .., b_element: .., c_element: .., rate: ..,
                    gemv_overhead: .., gemv_element: .., gemv_output: ..,
                    stream_fraction: .., cold_call: .., gemv_stream_fraction: ..,
                    dram_call: .., gemv_dram_row: ..}}
      attention: {fp32: {overhead: .., head: .., block: .., pair: .., kv_element: ..,
                         rate: .., decode_head: .., decode_kv_element: ..,
                         kv_lines_in_flight: 48, cold_call: ..}}
      intervals: {gemm: {low: 0.9, high: 1.15, count: 60}, ...}   # measured / predicted
      framework: 1.1 us                # model code's Python per Python-level torch call
      host_profile:                    # a trace with warm host times (sim.cost.cpu_host)
        {cold_factor: 3.1, cold_time: 5 ms, call_overlap: 0.5 us}
      datasheet: amd-epyc-zen5         # the datasheet spec it refines (validation baseline)
      sentinel: 300 us                 # a reference kernel's time then (machine state)

:func:`read_cpu_calibration` checks every key strictly (unknown or missing keys name the file and
the field) and that memory levels name levels of the spec.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from sim.spec_reader import Reader
from sim.units import Dimension

__all__ = ["GemmCoefficients", "AttentionCoefficients", "StreamLevel", "Interval",
           "CpuCalibration", "HostProfileModel", "read_cpu_calibration", "GEMM_KEYS",
           "ATTENTION_KEYS", "FLOOR_CATEGORIES"]

#: Categories with a fixed per-op kernel floor (GEMM and attention have their own overheads).
FLOOR_CATEGORIES = ("elementwise", "reduction", "norm", "copy", "embedding", "other")
_MAX_TIME_S = 1.0
_MAX_RATE = 1e17
_MAX_BW = 1e15


@dataclass(frozen=True)
class GemmCoefficients:
    """One GEMM kernel family (an aten op and dtype, or a dtype): t = overhead + a (b m k)
    + b_el (b n k) + c (b m n) + 2 b m n k / rate + B / (bw stream_fraction); a matrix-vector
    product (m = 1) takes another library path: gemv_overhead + gemv (b n k) + gemv_output (b n)
    + B / (bw stream_fraction).

    ``a_element_s`` / ``b_element_s``: seconds per element of A / B (packing the operand panels
    that the micro-kernel streams); ``c_element_s``: per element of C (accumulators and
    write-back); ``flops_per_s``: the micro-kernel's sustained rate on large shapes;
    ``gemv_*``: the matrix-vector product's fixed cost, cost per element of B and per output
    element (a dot product's horizontal sum and store);
    ``stream_fraction``: the fraction of a level's streaming bandwidth that reading B reaches.
    """

    overhead_s: float
    a_element_s: float
    b_element_s: float
    c_element_s: float
    flops_per_s: float
    gemv_overhead_s: float
    gemv_element_s: float
    gemv_output_s: float
    stream_fraction: float
    #: Extra seconds of a cold call: one whose code, library state and data were all evicted
    #: since the op last ran (a micro-benchmark point's first call of a sample block) and
    #: whose B fits in a cache level (a larger B streams from main memory either way, which
    #: hides the rest); never charged to a trace's ops. 0 when absent (an older spec).
    cold_call_s: float = 0.0
    #: The fraction of a level's streaming bandwidth that a matrix-vector product reaches
    #: reading B (BLAS gemv streams it straight into dot products; the GEMM path packs it
    #: first); when absent (an older spec), ``stream_fraction`` serves both.
    gemv_stream_fraction: float = math.nan
    #: Extra seconds of a call whose B streams from main memory: the stream's first misses,
    #: before the hardware prefetchers run ahead of it (both paths; a trace's ops too). 0 when
    #: absent (an older spec).
    dram_call_s: float = 0.0
    #: Extra seconds of a matrix-vector product per row of B (as stored: n rows of k for
    #: F.linear's weight, k rows of n for ``x @ w``) when B streams from main memory: each
    #: row starts new streams that the prefetchers ramp up on (0 when absent, an older spec).
    gemv_dram_row_s: float = 0.0

    def __post_init__(self) -> None:
        if math.isnan(self.gemv_stream_fraction):
            object.__setattr__(self, "gemv_stream_fraction", self.stream_fraction)


@dataclass(frozen=True)
class AttentionCoefficients:
    """One dtype's CPU flash attention (see :mod:`sim.cost.cpu`). Prefill: overhead + head
    (b h_q) + block (query blocks) + pair (computed pairs) + kv_element (K and V elements
    streamed through the query blocks) + matmul FLOPs / rate. Decode (s_q = 1): overhead +
    decode_head (b h_q) + pair + decode_kv_element (K, V elements) + their bytes / bw."""

    overhead_s: float
    head_s: float
    block_s: float
    pair_s: float
    kv_element_s: float
    flops_per_s: float
    decode_head_s: float
    decode_kv_element_s: float
    #: Cache lines of K and V the kernel keeps in flight: it reads a level no faster than
    #: lines x line size / the level's latency (Little's law); inf when absent (an older
    #: spec: K and V stream at the level's bandwidth).
    kv_lines_in_flight: float = math.inf
    #: Fixed seconds of a call whose code and library state were evicted (a micro-benchmark
    #: block's first call; never a trace's op), as the GEMM's; 0 in an older spec.
    cold_call_s: float = 0.0


@dataclass(frozen=True)
class StreamLevel:
    """Bandwidth that torch kernels achieve from one memory level, its effective capacity and
    its load latency (not fitted: the spec's own memory level's, measured and cited there;
    0 without one)."""

    name: str
    capacity_bytes: float
    bandwidth_bytes_per_s: float
    latency_s: float = 0.0


@dataclass(frozen=True)
class Interval:
    """The 10th and 90th percentile of measured / predicted on held-out points of a category."""

    low: float
    high: float
    count: int


@dataclass(frozen=True)
class CpuCalibration:
    """Everything :mod:`sim.cost.cpu` needs (SI units); see the module doc."""

    threads: int
    dispatch_s: float
    levels: tuple[StreamLevel, ...]
    fault_threshold_bytes: float
    fault_bytes_per_s: float
    strided_fraction: float
    floor_s: Mapping[str, float]
    op_floor_s: Mapping[str, float]
    element_s: Mapping[str, float]
    row_s: Mapping[str, float]
    gemm: Mapping[str, GemmCoefficients]
    attention: Mapping[str, AttentionCoefficients]
    intervals: Mapping[str, Interval] = field(default_factory=dict)
    framework_s: float = 0.0
    datasheet: str = ""
    sentinel_s: float = 0.0
    #: Fraction of a level's streaming bandwidth at which the first bytes of each row an
    #: embedding gathers arrive (rows at random table offsets: no hardware prefetch across
    #: rows; :mod:`sim.cost.cpu_gather`); 1 when absent (an older spec: gathers priced as
    #: streams).
    gather_fraction: float = 1.0
    #: Bytes of each gathered row that miss before the hardware prefetcher streams the rest
    #: (:mod:`sim.cost.cpu_gather`); unbounded when absent (an older spec: whole rows miss).
    gather_ramp_bytes: float = math.inf
    #: SIMD width (bytes) of the torch CPU kernels measured (``torch.backends.cpu``: AVX-512 64,
    #: AVX2 32) and the time per element of a row's scalar tail past its last full vector chunk,
    #: by op (``sim.cost.cpu.tail_elements``); 0 and empty when absent (an older spec).
    vector_bytes: float = 0.0
    tail_s: Mapping[str, float] = field(default_factory=dict)
    #: The host-time model of a trace with a host profile (:mod:`sim.cost.cpu_host`); None when
    #: absent (an older spec: such a trace is priced with ``framework`` like any other).
    host_profile: HostProfileModel | None = None


@dataclass(frozen=True)
class HostProfileModel:
    """How warm host times become a step's host times (:mod:`sim.cost.cpu_host`)."""

    cold_factor: float
    cold_time_s: float
    call_overlap_s: float


GEMM_KEYS = {"overhead": "overhead_s", "a_element": "a_element_s", "b_element": "b_element_s",
             "c_element": "c_element_s", "rate": "flops_per_s",
             "gemv_overhead": "gemv_overhead_s", "gemv_element": "gemv_element_s",
             "gemv_output": "gemv_output_s", "stream_fraction": "stream_fraction",
             "cold_call": "cold_call_s", "gemv_stream_fraction": "gemv_stream_fraction",
             "dram_call": "dram_call_s", "gemv_dram_row": "gemv_dram_row_s"}
ATTENTION_KEYS = {"overhead": "overhead_s", "head": "head_s", "block": "block_s",
                  "pair": "pair_s", "kv_element": "kv_element_s", "rate": "flops_per_s",
                  "decode_head": "decode_head_s", "decode_kv_element": "decode_kv_element_s",
                  "kv_lines_in_flight": "kv_lines_in_flight", "cold_call": "cold_call_s"}
#: Keys a spec written before they existed lacks (their record's default applies).
_OPTIONAL_KEYS = frozenset({"kv_lines_in_flight", "cold_call", "gemv_stream_fraction",
                            "dram_call", "gemv_dram_row"})
_MAX_LINES = 1e6


def read_cpu_calibration(r: Reader, level_names: tuple[str, ...],
                         latencies: Mapping[str, float] | None = None) -> CpuCalibration:
    """Read a ``cpu_calibration`` section strictly; ``level_names``: the spec's memory levels,
    ``latencies`` their load latencies (s), which each calibrated level takes from the spec."""
    latencies = latencies or {}
    faults = r.section("page_faults")
    cal = CpuCalibration(
        threads=int(r.quantity("threads", Dimension.COUNT, high=4096)),
        dispatch_s=_time(r, "dispatch"),
        levels=tuple(_level(item, level_names, latencies) for item in r.sections("memory")),
        fault_threshold_bytes=faults.quantity("threshold", Dimension.BYTES, high=1e12),
        fault_bytes_per_s=faults.quantity("bandwidth", Dimension.BANDWIDTH, high=_MAX_BW),
        strided_fraction=r.quantity("strided_fraction", Dimension.RATIO, high=1.0),
        gather_fraction=r.quantity("gather_fraction", Dimension.RATIO, high=1.0,
                                   required=False, default=1.0),
        gather_ramp_bytes=r.quantity("gather_ramp", Dimension.BYTES, high=1e12,
                                     required=False, default=math.inf),
        floor_s=_times(r.section("floor"), allowed=FLOOR_CATEGORIES),
        op_floor_s=_times(r.section("op_floor")),
        element_s=_times(r.section("element_time")),
        row_s=_times(r.section("row_time")),
        gemm=_per_dtype(r.section("gemm"), GEMM_KEYS, GemmCoefficients),
        attention=_per_dtype(r.section("attention"), ATTENTION_KEYS, AttentionCoefficients),
        intervals=_intervals(r.section("intervals", required=False)),
        framework_s=_time(r, "framework", required=False) or 0.0,
        datasheet=r.text("datasheet", required=False) or "",
        sentinel_s=_time(r, "sentinel", required=False) or 0.0,
        vector_bytes=r.quantity("vector_bytes", Dimension.BYTES, high=4096, allow_zero=True,
                                required=False, default=0.0),
        tail_s=_optional_times(r.section("tail_time", required=False)),
        host_profile=_host_profile(r.section("host_profile", required=False)),
    )
    faults.finish()
    if not cal.levels or cal.levels[-1].name != level_names[-1]:
        raise r.error("memory", f"must list levels of the spec, ending with main memory "
                      f"({level_names[-1]})")
    r.finish()
    return cal


def _time(r: Reader, key: str, *, required: bool = True) -> float | None:
    return r.quantity(key, Dimension.TIME, high=_MAX_TIME_S, allow_zero=True, required=required)


def _times(r: Reader, allowed: tuple[str, ...] = ()) -> dict[str, float]:
    out = {}
    for key in r.unread():
        if allowed and key not in allowed:
            raise r.error(key, f"unknown category; use one of {', '.join(allowed)}")
        out[str(key)] = _time(r, key)
    r.finish()
    return out


def _optional_times(r: Reader | None) -> dict[str, float]:
    return {} if r is None else _times(r)


def _level(r: Reader, level_names: tuple[str, ...],
           latencies: Mapping[str, float]) -> StreamLevel:
    name = r.text("level", choices=level_names)
    main = name == level_names[-1]
    capacity = r.quantity("capacity", Dimension.BYTES, high=1e14, required=not main)
    level = StreamLevel(name=name, capacity_bytes=float("inf") if main else capacity,
                        bandwidth_bytes_per_s=r.quantity("bandwidth", Dimension.BANDWIDTH,
                                                         high=_MAX_BW),
                        latency_s=latencies.get(name, 0.0))
    r.finish()
    return level


def _per_dtype(r: Reader, keys: Mapping[str, str], record: type) -> dict:
    out = {}
    for dtype in r.unread():
        d = r.section(dtype)
        values = {}
        for key, name in keys.items():
            required = key not in _OPTIONAL_KEYS
            if key == "rate":
                value = d.quantity(key, Dimension.FLOP_RATE, high=_MAX_RATE)
            elif name.endswith("_fraction"):
                value = d.quantity(key, Dimension.RATIO, high=1.0, required=required)
            elif name.endswith("_in_flight"):
                value = d.quantity(key, Dimension.COUNT, high=_MAX_LINES, required=required)
            else:
                value = _time(d, key, required=required)
            if value is not None:  # an absent optional key: the record's default
                values[name] = value
        d.finish()
        out[str(dtype)] = record(**values)
    r.finish()
    return out


def _host_profile(r: Reader | None) -> HostProfileModel | None:
    if r is None:
        return None
    model = HostProfileModel(
        cold_factor=r.quantity("cold_factor", Dimension.RATIO, high=100.0, allow_zero=True),
        cold_time_s=r.quantity("cold_time", Dimension.TIME, high=_MAX_TIME_S),
        call_overlap_s=_time(r, "call_overlap"))
    r.finish()
    return model


def _intervals(r: Reader | None) -> dict[str, Interval]:
    if r is None:
        return {}
    out = {}
    for category in r.unread():
        d = r.section(category)
        low = d.quantity("low", Dimension.RATIO, high=100.0)
        high = d.quantity("high", Dimension.RATIO, high=100.0)
        if high < low:
            raise d.error("high", f"must be >= low ({low:g})")
        out[str(category)] = Interval(low, high, int(d.quantity("count", Dimension.COUNT,
                                                                high=1e9)))
        d.finish()
    r.finish()
    return out
