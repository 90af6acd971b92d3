"""CPU sub-model: the time of one eager PyTorch op on the threads of a calibrated CPU spec.

A CPU device runs every op on the host's own cores: the simulator adds t_pre + t_calc in program
order, t_post = 0. With the coefficients of the spec's ``cpu_calibration``
(:mod:`sim.cpu_calibration`, fitted by ``validation.calibrate_cpu``):

    t_pre  = dispatch                  every op: Python -> dispatcher -> return (a view: only
             + framework x host_calls  this), plus the model code's own Python: ``framework``
                                       per Python-level torch call that led to the op
                                       (``attrs["host_calls"]``, :mod:`workloads.host_calls`;
                                       1 for an op of a trace that does not count them)
    t_calc by kind (plus, for any op, fresh output bytes / fault bandwidth, below):

    GEMM     overhead + a (b m k) + b_el (b n k) + c (b m n) + 2 b m n' k / rate
             + bytes(B) / (bw(level holding B) stream_fraction)
             n' = n rounded up to whole vectors (``vector_bytes``: 16 fp32, 32 bf16 lanes)
      m = 1: gemv_overhead + gemv (b n k) + gemv_output (b n) + bytes(B) / (bw(level holding
             B) stream_fraction) [+ gemv_dram_row x rows of B as stored, from main memory]
      B from main memory (either path) adds dram_call; a cold call (``Residency.cold``: a
             micro-benchmark's first call after other points; never a trace's op) whose B
             fits in a cache level adds cold_call
    attention (CPU flash attention)
             overhead + head (b h_q) + block Q + pair P + kv_element E + 2 (d + d_v) P / rate
             + read(K and V once, level holding them) + read(the rest of E, level holding
             one head's K and V);  read(bytes, level) = bytes x max(1 / bw, latency / (lines
             x 64 B)), lines = kv_lines_in_flight
      s_q = 1: overhead + decode_head (b h_q) + pair P + decode_kv_element E + the same reads
      a cold call whose K and V fit in a cache level adds cold_call, as a GEMM's
    streaming (elementwise, reduction, norm, copy, embedding, other)
             floor[op] + max(bytes / bw(level) [/ strided_fraction],
                             elements x element_time[op] + rows x row_time[op]
                             + tail x tail_time[op])
             [+ an embedding's gather misses: :mod:`sim.cost.cpu_gather`]

GEMM: the micro-kernel runs at ``rate`` on packed panels whose output columns fill whole
vector registers (a partial vector of n computes its masked-off lanes too: SIMD lane
quantization, the CPU's tile quantization; chosen over padding m or k, and over none, on the
fit split of three calibrations of 2026-11-29, whose fit-split p90 it lowered by 0.8-1.4
points), and each operand pass costs per element -- Hockney's half-performance length
(Hockney & Jesshope, "Parallel Computers 2", 1988, sec. 1.3.3: t = (n + n_1/2) / r_inf)
written per operand, so that a small m, n or k each
lowers the achieved rate; B (a layer's weight) also streams from the level that holds it, its
reads reaching a fitted fraction of the level's streaming bandwidth. A matrix-vector product
(m = 1: decoding one token) takes another library path (BLAS gemv): no packing, B streamed
once, at its own fraction (``gemv_stream_fraction``; with one fraction for both paths, gemm
p90 was 0-1.5 points higher on the fit split and 0.6-2.6 on the held-out split of five
calibrations of 2026-11-29; measured the same day over GPT-2's 154 MB LM head in main memory:
the gemv took 9.2 ms, 17 GB/s of B, the m = 8 GEMM 20.6 ms, the m = 64 one 78 ms). Each
aten op (addmm, mm, bmm), layout of B (:func:`gemm_key`) and dtype has its own coefficients
when calibrated (different library calls), else the dtype's. A GEMM whose code,
library state and page translations were evicted since it last ran pays a fixed
``cold_call`` on top (measured here 2026-11-29: after 64 MiB of unrelated reads, F.linear and
bmm of 1-64 rows took +20-43 us in fp32 and +46-67 us in bf16, against 3-150 us warm; a call
after another GEMM or a gelu paid nothing). Only micro-benchmark points have cold calls;
fitted without the term, the cost went into the coefficients that price every warm call of a
model's step. A call whose B alone exceeds the last cache level streams B from main memory
cold or not, and the stream hides the cold start: measured here 2026-11-29, the same 64 MiB
flush before one call of an fp32 gemv over 9-13 MB of B cost -9 to +19 us against the call in
a loop over a 256 MB pool of weights, over 0.3-2.4 MB +30-47 us. Charged cold_call, the
suite's large GEMMs (one call per sample: every call cold) fitted B streams faster than a
model's step sees: GPT-2's 48 decode gemvs over 340 MB ran 16.5 ms in a loop, predicted 13.0;
the re-fits of four calibrations without that charge moved GPT-2 decode end to end by
+5 to +7 points (to -6.6 to +0.8 %). A call whose B streams from main memory also pays a
fixed ``dram_call`` (the stream's first misses before the prefetchers run ahead; the
intercept of gemv time over bytes of B from main memory, measured: 1.4 us for F.linear's
layout, 12 us for Conv1D's; fitted 0-8 us). A matrix-vector product streaming B from main
memory also pays ``gemv_dram_row`` per row of B as stored (n rows for F.linear's n x k, k for
k x n: each row starts streams the prefetchers ramp up on; 48 MiB of fp32 streamed at 28.5
GB/s in rows of 16384, 9.5 GB/s in rows of 128: docs/cpu-validation.md).
Attention: PyTorch's CPU kernel (aten/src/ATen/native/cpu/FlashAttentionKernel.cpp,
``flash_attention_kernel_impl``) splits queries into blocks of 32 / 64 / 256 rows (s_q < 192 /
< 768 / larger) and keys into blocks of 512; a causal mask skips only whole key blocks past the
diagonal. Per (batch, query head), Q counts its query blocks, P the (query, key) pairs of the
blocks it computes and E the K and V elements each query block multiplies (padded keys x
(d + d_v)): the two matmuls of a block are small GEMMs whose B operand (K, V) is streamed per
query block, so prefill amortizes E over a block's rows; decoding (one query row per head)
multiplies vectors by K and V, a matrix-vector product like the GEMM's m = 1. K and V come from
the level holding them once; every further pass over them (the next query block, another query
head of a grouped-query group) finds them in the level that holds one head's K and V. A read
is also bounded by Little's law: the kernel keeps ``kv_lines_in_flight`` cache lines in flight,
so it reads a level no faster than lines x 64 B / the level's load latency (the spec's). From
main memory that binds (measured here 2026-11-29, fp32 decode over 1.5-18 MiB of cold K and V:
13-17 GB/s, against 40 GB/s of streaming; from the L3, 42-59 GB/s): the calibrations of that
day fitted 41-49 lines for fp32, 50-75 for bf16. Chosen over a fitted fraction of the
bandwidth (the same fit-split p90, but a fraction also slows the caches, where the measured
reads run at full speed).
Streaming: bytes flow from the level holding the working set unless the per-element work
(a special function, a softmax) is slower (Williams et al., "Roofline", CACM 2009: the max of
the two); a row-wise op (softmax, norm, reduction over the last dimension) also pays per row
(horizontal reduction), and an embedding per gathered row (a row copy). The elements of a row
past its last full vector chunk (``tail``, :func:`tail_elements`) run a scalar loop: PyTorch's
inner reductions (aten/src/ATen/native/cpu/Reduce.h, ``vectorized_inner_reduction``) take
chunks of 4 vectors and finish with ``basic_loop``, the other row kernels chunks of one vector,
so a row of 64 fp32 elements runs 2-4x faster than one of 88 (measured: amax 9 vs 38 ns per
row). A
strided (transposing) copy reaches ``strided_fraction`` of the bandwidth and has its own floor,
element and row time (key ``clone_strided``: a loop of strided element loads, not the contiguous
copy's memcpy, so one element time cannot serve both; an inner loop per output row: a
transpose into 6848 rows of 3 took 36 us, one into 142 rows of 125, about as many elements,
14 us; without the row term the fit gave the strided floor 15-18 us), an embedding's rows miss
the prefetcher where each starts (:mod:`sim.cost.cpu_gather`); each op has a fixed floor
(dispatch past t_pre, output allocation, loop set-up), by op name, else by category.
Page faults: glibc malloc serves blocks of at least M_MMAP_THRESHOLD by mmap (dynamic, at most
DEFAULT_MMAP_THRESHOLD_MAX = 32 MiB on 64-bit; mallopt(3)), so such an output is fresh memory
whose pages fault on first touch at the fitted fault bandwidth.

Residency: data come from the innermost level whose effective capacity covers their reuse
distance (bytes touched between two uses; LRU). An op repeated alone re-touches its working set;
a model's step touches each weight once, after all others (:func:`trace_residency`: the sum of
its GEMM weights), and so an embedding's table and the KV cache a decode step appends to (copies
marked ``kv_cache: append``; GPT-2 decode's 200 KB appends took 10-22 us in situ, 3.5 from L2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sim.cost.cpu_gather import gather_seconds, gathered_rows
from sim.cost.opcost import OpCost
from sim.cpu_calibration import CpuCalibration
from sim.trace import Op
from sim.units import DTYPE_BYTES

__all__ = ["Residency", "trace_residency", "cpu_op_cost", "level_index", "gemm_terms",
           "attention_terms", "stream_terms", "gemm_seconds", "attention_seconds",
           "stream_seconds", "element_key", "flash_blocks", "element_time", "op_floor",
           "gemm_coefficients", "gemm_key", "host_calls",
           "STREAM_CATEGORIES", "STRIDED_SUFFIX", "KN_SUFFIX", "CACHE_LINE_BYTES"]

STREAM_CATEGORIES = ("elementwise", "reduction", "norm", "copy", "embedding", "other")
#: Key suffix of a strided (transposing) copy's floor and element time: another loop than the
#: contiguous copy of the same op (``clone_strided`` beside ``clone``).
STRIDED_SUFFIX = "_strided"
#: Key suffix of the coefficients of a GEMM whose B is stored k x n (:func:`gemm_key`): BLAS
#: runs it through another kernel than F.linear's n x k weight.
KN_SUFFIX = "_kn"
#: Bytes of a cache line (x86, and the Zen 5 of this project's CPU spec: 64 B).
CACHE_LINE_BYTES = 64
_Q_BLOCKS = ((768, 256), (192, 64), (0, 32))  # (s_q at least, query block rows)
_KV_BLOCK = 512


@dataclass(frozen=True)
class Residency:
    """Reuse distances (bytes) of an op's data and of its weights; None: its working set.
    ``cold``: the call's code and library state were evicted too (a micro-benchmark's first
    call after other points; a GEMM call then pays its ``cold_call``)."""

    reuse_bytes: float | None = None
    weight_reuse_bytes: float | None = None
    cold: bool = False


def trace_residency(ops: Sequence[Op]) -> Residency:
    """A model step's residency: weights (B of each b = 1 GEMM) are reused once per step."""
    weights = sum(_b_bytes(op) for op in ops if op.category == "gemm" and _is_weight_gemm(op))
    return Residency(weight_reuse_bytes=weights or None)


def level_index(cal: CpuCalibration, reuse_bytes: float) -> int:
    """Index of the innermost calibrated level whose capacity covers ``reuse_bytes``."""
    for i, level in enumerate(cal.levels):
        if reuse_bytes <= level.capacity_bytes:
            return i
    return len(cal.levels) - 1


def element_key(op: Op) -> str:
    """``gelu`` for aten::gelu / aten::gelu_ (``element_time`` keys; ``gelu.bf16`` per dtype)."""
    return op.name.removeprefix("aten::").rstrip("_") or op.name


def flash_blocks(s_q: int, s_k: int, causal: bool) -> tuple[int, int, int]:
    """(query blocks, computed pairs, padded keys summed over query blocks) of the CPU flash
    kernel, per (batch, head)."""
    q_block = next(rows for at_least, rows in _Q_BLOCKS if s_q >= at_least)
    blocks = pairs = keys_total = 0
    for start in range(0, s_q, q_block):
        rows = min(q_block, s_q - start)
        keys = s_k
        if causal:  # top-left: row i sees keys 0..i; whole key blocks past it are skipped
            keys = min(s_k, math.ceil(min(start + rows, s_k) / _KV_BLOCK) * _KV_BLOCK)
        blocks, pairs, keys_total = blocks + 1, pairs + rows * keys, keys_total + keys
    return blocks, pairs, keys_total


def _is_weight_gemm(op: Op) -> bool:
    return int(op.attrs.get("b", 1)) == 1 and all(k in op.attrs for k in ("m", "n", "k"))


def _b_is_kn(op: Op) -> bool:
    """Whether B is stored k x n (``attrs.b_layout``; else F.linear's n x k)."""
    return op.attrs.get("b_layout") == "kn"


def _b_bytes(op: Op) -> float:
    b, n, k = (int(op.attrs.get(key, 1)) for key in ("b", "n", "k"))
    return float(b * n * k * DTYPE_BYTES.get(op.dtype, 4))


def _fault_bytes(op: Op, cal: CpuCalibration) -> float:
    if op.name.endswith("_"):  # in place: writes an existing tensor
        return 0.0
    return float(sum(t.nbytes for t in op.outputs if t.nbytes >= cal.fault_threshold_bytes))


def gemm_terms(op: Op, cal: CpuCalibration, residency: Residency) -> dict[str, float]:
    """Per-GEMM quantities of the GEMM formula (module doc)."""
    b, m, n, k = (int(op.attrs.get(key, 1)) for key in ("b", "m", "n", "k"))
    b_bytes = _b_bytes(op)
    reuse = max(op.bytes_total, residency.reuse_bytes or 0.0)
    if _is_weight_gemm(op) and residency.weight_reuse_bytes is not None:
        reuse = max(reuse, residency.weight_reuse_bytes)
    lanes = vector_lanes(cal.vector_bytes, op.dtype)
    level, memory = level_index(cal, reuse), len(cal.levels) - 1
    return {"bmk": b * m * k, "bnk": b * n * k, "bmn": b * m * n, "flops": 2.0 * b * m * n * k,
            "kernel_flops": 2.0 * b * m * math.ceil(n / lanes) * lanes * k,
            "b_bytes": b_bytes, "gemv": float(m == 1), "level": level,
            "fault_bytes": _fault_bytes(op, cal),
            "cold": float(residency.cold and level_index(cal, b_bytes) < memory),
            "dram": float(level == memory), "b_rows": float(b * (k if _b_is_kn(op) else n))}


def attention_terms(op: Op, cal: CpuCalibration, residency: Residency) -> dict[str, float]:
    """Per-attention quantities of the attention formula (module doc)."""
    a = op.attrs
    b, h_q, s_q, s_k, d = (int(a[key]) for key in ("b", "h_q", "s_q", "s_k", "d"))
    d_v = int(a.get("d_v", d))
    blocks, pairs, keys = flash_blocks(s_q, s_k, bool(a.get("causal", False)))
    heads = b * h_q
    kv_elements = heads * keys * (d + d_v)
    element_bytes = DTYPE_BYTES.get(op.dtype, 4)
    level = level_index(cal, max(op.bytes_total, residency.reuse_bytes or 0.0))
    # K and V come from ``level`` once; each further pass over them (another query block,
    # another query head of the group) finds them where one head's K and V fit
    first = min(kv_elements, b * int(a.get("h_kv", h_q)) * s_k * (d + d_v)) * element_bytes
    again = min(level, level_index(cal, s_k * (d + d_v) * element_bytes))
    return {"heads": heads, "blocks": heads * blocks, "pairs": heads * pairs,
            "decode": float(s_q == 1), "kv_elements": kv_elements,
            "flops": 2.0 * heads * pairs * (d + d_v),
            "kv_bytes": float(kv_elements * element_bytes), "kv_first_bytes": float(first),
            "level": level, "bandwidth": _bandwidth(cal, level),
            "latency": cal.levels[level].latency_s, "again_bandwidth": _bandwidth(cal, again),
            "again_latency": cal.levels[again].latency_s, "fault_bytes": _fault_bytes(op, cal),
            "cold": float(residency.cold and level_index(cal, first) < len(cal.levels) - 1)}


def stream_terms(op: Op, cal: CpuCalibration, residency: Residency) -> dict:
    """Per-op quantities of the streaming formula (module doc)."""
    reuse = max(op.bytes_total, residency.reuse_bytes or 0.0)
    if op.category == "embedding" or op.attrs.get("kv_cache") == "append":  # once a step
        reuse = max(reuse, residency.weight_reuse_bytes or 0.0)
    tensors = (*op.inputs, *op.outputs)
    strided = op.attrs.get("contiguous") is False
    gathered, repeated = gathered_rows(op, cal.gather_ramp_bytes)
    return {"category": op.category if op.category in STREAM_CATEGORIES else "other",
            "key": element_key(op) + (STRIDED_SUFFIX if strided else ""), "dtype": op.dtype,
            "bytes": op.bytes_total - repeated,
            "elements": float(max((t.numel for t in tensors), default=0)),
            "rows": _rows(op), "tail": tail_elements(op, cal.vector_bytes),
            "strided": strided, "gather_bytes": gathered,
            "level": level_index(cal, reuse),
            "fault_bytes": _fault_bytes(op, cal)}


#: Row reductions PyTorch runs through Reduce.h's vectorized_inner_reduction: chunks of 4 vectors.
_FOUR_VECTOR_CHUNKS = frozenset({"amax", "amin", "max", "min", "prod", "argmax", "argmin"})


def tail_elements(op: Op, vector_bytes: float) -> float:
    """Elements of a row-wise op (reduction or norm over the last dimension) past the last full
    vector chunk of each row, summed over rows (module doc); 0 without a vector width."""
    first = op.inputs[0] if op.inputs else None
    if (op.category not in ("reduction", "norm") or first is None or not first.shape
            or vector_bytes <= 0):
        return 0.0
    cols = first.shape[-1]
    lanes = vector_lanes(vector_bytes, first.dtype)
    chunk = 4 * lanes if element_key(op) in _FOUR_VECTOR_CHUNKS else lanes
    return float(cols % chunk) * (first.numel / cols if cols else 0.0)


def vector_lanes(vector_bytes: float, dtype: str) -> int:
    """Elements of ``dtype`` in one vector register of ``vector_bytes`` (at least 1)."""
    return max(int(vector_bytes // DTYPE_BYTES.get(dtype, 4)), 1)


def _rows(op: Op) -> float:
    """Rows a row-wise op visits: an embedding's gathered rows; a reduction's or norm's rows of
    its input's last dimension; a strided copy's output rows (each an inner loop over strided
    loads); 0 for elementwise ops and contiguous copies."""
    if op.category == "embedding":
        return float(op.attrs.get("num_indices", 0))
    if op.category == "copy" and op.attrs.get("contiguous") is False:
        out = op.outputs[0] if op.outputs else None
        return out.numel / out.shape[-1] if out is not None and out.shape and out.shape[-1] else 0.0
    first = op.inputs[0] if op.inputs else None
    if op.category not in ("reduction", "norm") or first is None or not first.shape:
        return 0.0
    return first.numel / first.shape[-1] if first.shape[-1] else 0.0


def gemm_seconds(coef, terms, bandwidth, fault_bytes_per_s):
    """GEMM t_calc (s); ``terms`` as :func:`gemm_terms` (scalars or arrays), ``bandwidth`` of
    the level holding B."""
    gemm = (coef.overhead_s + coef.a_element_s * terms["bmk"] + coef.b_element_s * terms["bnk"]
            + coef.c_element_s * terms["bmn"] + terms["kernel_flops"] / coef.flops_per_s
            + terms["b_bytes"] / (bandwidth * coef.stream_fraction))
    gemv = (coef.gemv_overhead_s + coef.gemv_element_s * terms["bnk"]
            + coef.gemv_output_s * terms["bmn"]
            + terms["b_bytes"] / (bandwidth * coef.gemv_stream_fraction)
            + coef.gemv_dram_row_s * terms["b_rows"] * terms["dram"])
    return (np.where(terms["gemv"] > 0, gemv, gemm) + terms["fault_bytes"] / fault_bytes_per_s
            + coef.cold_call_s * terms["cold"] + coef.dram_call_s * terms["dram"])


def attention_seconds(coef, terms, fault_bytes_per_s):
    """Attention t_calc (s); ``terms`` as :func:`attention_terms`."""
    lines = coef.kv_lines_in_flight * CACHE_LINE_BYTES
    first = np.maximum(1.0 / terms["bandwidth"], terms["latency"] / lines)
    again = np.maximum(1.0 / terms["again_bandwidth"], terms["again_latency"] / lines)
    stream = (terms["kv_first_bytes"] * first
              + (terms["kv_bytes"] - terms["kv_first_bytes"]) * again)
    prefill = (coef.head_s * terms["heads"] + coef.block_s * terms["blocks"]
               + coef.kv_element_s * terms["kv_elements"] + terms["flops"] / coef.flops_per_s
               + stream)
    decode = (coef.decode_head_s * terms["heads"]
              + coef.decode_kv_element_s * terms["kv_elements"] + stream)
    return (coef.overhead_s + coef.pair_s * terms["pairs"]
            + np.where(terms["decode"] > 0, decode, prefill)
            + terms["fault_bytes"] / fault_bytes_per_s + coef.cold_call_s * terms["cold"])


def stream_seconds(floor_s, nbytes, bandwidth, elements, element_s, rows, row_s, fault_bytes,
                   fault_bytes_per_s, tail=0.0, tail_s=0.0, gather_s=0.0):
    """Streaming t_calc (s), numpy-broadcasting; ``bandwidth`` already scaled by the strided
    fraction, ``gather_s`` an embedding's gather misses (:mod:`sim.cost.cpu_gather`)."""
    work = elements * element_s + rows * row_s + tail * tail_s
    return (floor_s + np.maximum(nbytes / bandwidth, work) + gather_s
            + fault_bytes / fault_bytes_per_s)


def cpu_op_cost(op: Op, cal: CpuCalibration, residency: Residency = Residency()) -> OpCost:
    """The op's t_pre, t_calc (t_post = 0) with calibration ``cal`` (module doc)."""
    framework = cal.framework_s * host_calls(op)
    if op.category == "view" or op.attrs.get("host_scalar"):
        return OpCost(cal.dispatch_s + framework, 0.0, 0.0, "host", {"reason": "no kernel"})
    gemm = gemm_coefficients(cal, op)
    attention = cal.attention.get(op.dtype)
    if op.category == "gemm" and gemm is not None and all(k in op.attrs for k in "mnk"):
        terms = gemm_terms(op, cal, residency)
        t = gemm_seconds(gemm, terms, _bandwidth(cal, terms["level"]), cal.fault_bytes_per_s)
        bound = "compute" if terms["kernel_flops"] / gemm.flops_per_s > t / 2 else "latency"
    elif op.category == "attention" and attention is not None and "s_k" in op.attrs:
        terms = attention_terms(op, cal, residency)
        t = attention_seconds(attention, terms, cal.fault_bytes_per_s)
        bound = "compute" if terms["flops"] / attention.flops_per_s > t / 2 else "latency"
    else:
        terms = stream_terms(op, cal, residency)
        t, bound = _stream(cal, terms)
    detail = {k: v for k, v in terms.items() if k not in ("category", "dtype")}
    detail["memory_level"] = cal.levels[terms["level"]].name
    return OpCost(cal.dispatch_s + framework, float(t), 0.0, bound, detail)


def _bandwidth(cal: CpuCalibration, level: int) -> float:
    return cal.levels[level].bandwidth_bytes_per_s


def _stream(cal: CpuCalibration, terms: dict) -> tuple[float, str]:
    bandwidth = (_bandwidth(cal, terms["level"])
                 * (cal.strided_fraction if terms["strided"] else 1.0))
    nbytes = terms["bytes"]
    gather = float(gather_seconds(terms["gather_bytes"], bandwidth, cal.gather_fraction))
    per_element = element_time(cal, terms["key"], terms["dtype"])
    per_row = element_time(cal, terms["key"], terms["dtype"], table=cal.row_s)
    per_tail = element_time(cal, terms["key"], terms["dtype"], table=cal.tail_s)
    floor = op_floor(cal, terms["key"], terms["dtype"], terms["category"])
    t = stream_seconds(floor, nbytes, bandwidth, terms["elements"], per_element,
                       terms["rows"], per_row, terms["fault_bytes"], cal.fault_bytes_per_s,
                       terms["tail"], per_tail, gather)
    memory_s = nbytes / bandwidth + gather
    compute_s = (terms["elements"] * per_element + terms["rows"] * per_row
                 + terms["tail"] * per_tail)
    bound = "latency" if floor > max(memory_s, compute_s) else (
        "memory" if memory_s >= compute_s else "compute")
    return float(t), bound


def host_calls(op: Op) -> float:
    """Python-level torch calls that led to ``op`` (its ``host_calls`` attr), else 1."""
    return float(op.attrs.get("host_calls", 1))


def gemm_key(op: Op) -> str:
    """Coefficient key of a GEMM: its aten op (``addmm``), with :data:`KN_SUFFIX` when its B
    operand is stored k x n (``attrs.b_layout``: GPT-2's ``Conv1D``, ``x @ w``) rather than
    n x k (``F.linear``'s weight, and a trace that does not say)."""
    return element_key(op) + (KN_SUFFIX if _b_is_kn(op) else "")


def gemm_coefficients(cal: CpuCalibration, op: Op):
    """The GEMM coefficients of ``op``: its aten op and layout's (``addmm_kn.fp32``), else its
    aten op's (``addmm.fp32``), else its dtype's."""
    gemm = cal.gemm
    return gemm.get(f"{gemm_key(op)}.{op.dtype}", gemm.get(f"{element_key(op)}.{op.dtype}",
                                                             gemm.get(op.dtype)))


def element_time(cal: CpuCalibration, key: str, dtype: str, *, table=None) -> float:
    """Seconds per element (or per row, ``table=cal.row_s``) of op ``key`` in ``dtype``:
    ``key.dtype``, else ``key``, else 0."""
    table = cal.element_s if table is None else table
    return table.get(f"{key}.{dtype}", table.get(key, 0.0))


def op_floor(cal: CpuCalibration, key: str, dtype: str, category: str) -> float:
    """Fixed seconds of op ``key``: ``key.dtype``, else ``key``, else its category's floor."""
    floors = cal.op_floor_s
    return floors.get(f"{key}.{dtype}", floors.get(key, cal.floor_s.get(
        category, cal.floor_s.get("other", 0.0))))
