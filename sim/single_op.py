"""One op, priced and explained: the teaching view behind ``tksim op KIND ...``.

:func:`make_op` builds a single trace op from sizes (a GEMM's m, n, k; an attention's batch,
heads, sequence lengths; an elementwise op's element count; a collective's bytes and ranks), and
:func:`explain` prints how each of t_pre, t_calc and t_post was computed and what bounds it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sim.cost import OpCost
from sim.cost.attention import attention_bytes, attention_flops
from sim.cost.collective import COLLECTIVES
from sim.errors import InputError
from sim.hardware import HardwareSpec
from sim.trace import Op
from sim.units import DTYPE_BYTES, format_quantity

__all__ = ["OP_KINDS", "make_op", "explain"]

OP_KINDS = ("gemm", "attention", "elementwise", "norm", *COLLECTIVES)
_MAX_DIM = 2**31  # larger than any tensor dimension a device can hold


def make_op(kind: str, dtype: str, sizes: Mapping[str, Any]) -> Op:
    """A single op of ``kind`` with ``sizes`` (keys as the CLI flags, e.g. m, n, k)."""
    if kind not in OP_KINDS:
        raise InputError(f"unknown op kind {kind!r}; one of {', '.join(OP_KINDS)}", field="KIND")
    if dtype not in DTYPE_BYTES:
        raise InputError(f"unknown dtype {dtype!r}; one of {', '.join(DTYPE_BYTES)}",
                         field="--dtype")
    return _BUILDERS[kind](kind, dtype, sizes)


def _size(sizes: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = sizes.get(key)
    if value is None:
        if default is None:
            raise InputError("required for this op kind", field=f"--{key.replace('_', '-')}")
        return default
    if not 1 <= value <= _MAX_DIM:
        raise InputError(f"must be between 1 and {_MAX_DIM}, got {value}",
                         field=f"--{key.replace('_', '-')}")
    return int(value)


def _gemm(kind: str, dtype: str, sizes: Mapping[str, Any]) -> Op:
    b, m, n, k = (_size(sizes, "b", 1), _size(sizes, "m"), _size(sizes, "n"), _size(sizes, "k"))
    width = DTYPE_BYTES[dtype]
    return Op(id=0, name="gemm", category="gemm", dtype=dtype, flops=2.0 * b * m * n * k,
              bytes_read=b * (m * k + k * n) * width, bytes_written=b * m * n * width,
              attrs={"b": b, "m": m, "n": n, "k": k})


def _attention(kind: str, dtype: str, sizes: Mapping[str, Any]) -> Op:
    seq = _size(sizes, "seq")
    heads = _size(sizes, "heads")
    attrs = {"b": _size(sizes, "b", 1), "h_q": heads, "h_kv": _size(sizes, "kv_heads", heads),
             "s_q": seq, "s_k": _size(sizes, "context", seq), "d": _size(sizes, "head_dim", 128),
             "causal": bool(sizes.get("causal", True))}
    total = attention_bytes(attrs, dtype)
    out = attrs["b"] * attrs["h_q"] * attrs["s_q"] * attrs["d"] * DTYPE_BYTES[dtype]
    return Op(id=0, name="attention", category="attention", dtype=dtype,
              flops=attention_flops(attrs), bytes_read=total - out, bytes_written=out,
              attrs=attrs)


def _elementwise(kind: str, dtype: str, sizes: Mapping[str, Any]) -> Op:
    numel = _size(sizes, "numel")
    inputs = _size(sizes, "inputs", 2 if kind == "elementwise" else 1)
    per_element = sizes.get("flops_per_element") or (1 if kind == "elementwise" else 8)
    width = DTYPE_BYTES[dtype]
    category = "elementwise" if kind == "elementwise" else "norm"
    return Op(id=0, name=kind, category=category, dtype=dtype, flops=float(numel * per_element),
              bytes_read=numel * inputs * width, bytes_written=numel * width,
              attrs={"numel": numel, "inputs": inputs, "flops_per_element": per_element})


def _collective(kind: str, dtype: str, sizes: Mapping[str, Any]) -> Op:
    nbytes = _size(sizes, "bytes")
    ranks = _size(sizes, "ranks", 8)
    if ranks < 2:
        raise InputError("a collective needs at least 2 ranks", field="--ranks")
    return Op(id=0, name=kind, category="collective", dtype=dtype, bytes_read=float(nbytes),
              bytes_written=float(nbytes), attrs={"kind": kind, "bytes": nbytes,
                                                  "num_ranks": ranks})


_BUILDERS = {"gemm": _gemm, "attention": _attention, "elementwise": _elementwise,
             "norm": _elementwise, **{name: _collective for name in COLLECTIVES}}


def explain(op: Op, spec: HardwareSpec, cost: OpCost) -> str:
    """How t_pre, t_calc and t_post of ``op`` on ``spec`` were computed, line by line."""
    d, host, fq = cost.detail, spec.host, format_quantity
    kernels = d.get("num_kernels", 1)
    lines = [f"{op.name} {_describe(op)} {op.dtype} on {spec.name}"]
    if op.category != "collective":
        intensity = op.flops / op.bytes_total if op.bytes_total else float("inf")
        lines.append(f"  work:   {fq(op.flops, 'FLOP')}, {fq(op.bytes_total, 'B')} moved "
                     f"(intensity {intensity:.3g} FLOP/B)")
    lines.append(f"  t_pre  = dispatch {fq(host.dispatch_s, 's')} + {kernels} kernel(s) x launch "
                 f"{fq(host.launch_s, 's')} = {fq(cost.t_pre_s, 's')}")
    lines.append(f"  t_calc = {_calc_line(d, kernels)} = {fq(cost.t_calc_s, 's')}  "
                 f"[{cost.bound}-bound]")
    lines += _detail_lines(d, spec)
    lines.append(f"  t_post = {kernels} x completion {fq(host.completion_s, 's')}"
                 f"{' + sync ' + fq(host.sync_s, 's') if op.sync else ''} = "
                 f"{fq(cost.t_post_s, 's')}")
    lines.append(f"  total  = {fq(cost.total_s, 's')}" + _achieved(op, spec, cost))
    return "\n".join(lines)


def _describe(op: Op) -> str:
    keys = [k for k in op.attrs if k != "kind"]
    return " ".join(f"{k}={op.attrs[k]}" for k in keys) or f"flops={op.flops:g}"


def _calc_line(d: Mapping[str, Any], kernels: int) -> str:
    fq = format_quantity
    if "t_bandwidth_s" in d:
        return (f"{d['algorithm']} over {d['num_ranks']} ranks on {d['link']}: latency "
                f"{fq(d['t_latency_s'], 's')} + bandwidth {fq(d['t_bandwidth_s'], 's')}")
    terms = (d["t_compute_s"], d["t_memory_s"], d["t_latency_s"])
    both = (f"compute {fq(d['t_compute_s'], 's')}, memory {fq(d['t_memory_s'], 's')} from "
            f"{d['memory_level']}")
    if abs(d.get("t_k_s", max(terms)) - max(terms)) <= 1e-9 * max(terms):
        return f"{kernels} x max({both}, latency {fq(d['t_latency_s'], 's')})"
    # calibrated GPU kernels: the slower of the two, plus a fixed per-kernel overhead
    return f"{kernels} x (max({both}) + kernel overhead {fq(d['t_latency_s'], 's')})"


def _detail_lines(d: Mapping[str, Any], spec: HardwareSpec) -> list[str]:
    lines = []
    if "waves" in d:
        lines.append(f"           {d['tiles']} tiles of {d['tile']} in {d['waves']} wave(s) over "
                     f"{spec.compute.num_units} units (quantization efficiency "
                     f"{d['quantization_efficiency']:.0%})")
    if "achievable_flops_per_s" in d:
        lines.append(f"           at {format_quantity(d['achievable_flops_per_s'], 'FLOP/s')} and "
                     f"{format_quantity(d['achievable_bytes_per_s'], 'B/s')} achievable")
    return lines


def _achieved(op: Op, spec: HardwareSpec, cost: OpCost) -> str:
    if not cost.total_s or op.category in ("collective", "send_recv"):
        return ""
    if cost.bound == "memory":
        rate, peak = op.bytes_total / cost.total_s, spec.memory_bandwidth(spec.main_memory)
        return (f"   (achieved {format_quantity(rate, 'B/s')} = {rate / peak:.0%} of the "
                f"{spec.main_memory.name} peak {format_quantity(peak, 'B/s')})")
    rate = op.flops / cost.total_s
    engine = "matrix" if op.category in ("gemm", "attention") else "vector"
    peak = (spec.compute.matrix_peak(op.dtype) if engine == "matrix"
            else spec.compute.vector_peak(op.dtype))
    return (f"   (achieved {format_quantity(rate, 'FLOP/s')} = {rate / peak:.0%} of the "
            f"{engine} peak {format_quantity(peak, 'FLOP/s')})")
