"""Traces: a DAG of ops in program order, captured from a PyTorch run (schema ``tksim.trace`` 1).

An :class:`Op` is one framework-level operation (an aten op, a collective, an optimizer step) with
what the cost model needs to re-time it on any device: category, shapes and dtypes, FLOPs, bytes
read and written, and ``attrs`` that give it a device-neutral meaning (a GEMM's ``b, m, n, k``; an
attention's ``b, h_q, h_kv, s_q, s_k, d, causal``). ``deps`` are the ids of ops whose outputs it
reads; ops are listed in the order the host issued them. ``measured_s`` is the op's duration on the
machine it was captured on, when it was measured; ``measured_host_s`` the host time measured
before it (since the previous op ended: the program's Python and the framework), when it was
(a capture timed from inside the dispatcher, ``workloads.op_timer``); ``warm_host_s`` the host
time before it measured on a shrunken twin of the model whose caches stay warm (a capture with a
host profile, ``workloads.host_twin``), which the CPU sub-model scales by how cold the step
leaves the code (``sim.cost.cpu_host``).

On disk a trace is JSON (gzip when the name ends in ``.gz``), one op per line so that large traces
stream (:mod:`sim.trace_stream` reads and writes the files); see ``docs/trace-format.md`` and
``docs/trace-interop.md``. :func:`read_trace` validates everything and fails with one line naming
the file and field; :func:`op_from_dict`, :func:`check_header` and :func:`check_graph` are the same
checks, one piece at a time, for readers that stream.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.errors import InputError
from sim.units import DTYPE_BYTES

__all__ = [
    "SCHEMA",
    "VERSION",
    "CATEGORIES",
    "PHASES",
    "TensorMeta",
    "Op",
    "Trace",
    "read_trace",
    "write_trace",
    "trace_from_dict",
    "op_from_dict",
    "check_header",
    "check_graph",
    "find_cycle",
    "forward_dep_message",
]

SCHEMA = "tksim.trace"
VERSION = 1
CATEGORIES = (
    "gemm", "attention", "elementwise", "reduction", "norm", "embedding", "copy",
    "collective", "send_recv", "optimizer", "view", "other",
)
PHASES = ("forward", "backward", "optimizer", "other")
_MAX_FLOPS = 1e21  # one op above a zettaFLOP is a unit slip, not a workload
_MAX_BYTES = 1e16


@dataclass(frozen=True, slots=True)
class TensorMeta:
    """Shape and dtype of one tensor argument (dtype names as in ``sim.units.DTYPE_BYTES``)."""

    shape: tuple[int, ...]
    dtype: str

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> float:
        return self.numel * DTYPE_BYTES[self.dtype]


@dataclass(frozen=True, slots=True)
class Op:
    """One op of a trace (see the module doc); times in seconds, sizes in bytes and FLOP."""

    id: int
    name: str
    category: str
    flops: float = 0.0
    bytes_read: float = 0.0
    bytes_written: float = 0.0
    deps: tuple[int, ...] = ()
    inputs: tuple[TensorMeta, ...] = ()
    outputs: tuple[TensorMeta, ...] = ()
    dtype: str = "fp32"
    stream: int = 0
    rank: int = 0
    module: str = ""
    phase: str = "forward"
    num_kernels: int = 1
    sync: bool = False
    measured_s: float | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)
    measured_host_s: float | None = None
    warm_host_s: float | None = None

    @property
    def bytes_total(self) -> float:
        return self.bytes_read + self.bytes_written

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in _OP_FIELD_ORDER}
        data["deps"] = list(self.deps)
        data["inputs"] = [{"shape": list(t.shape), "dtype": t.dtype} for t in self.inputs]
        data["outputs"] = [{"shape": list(t.shape), "dtype": t.dtype} for t in self.outputs]
        data["attrs"] = dict(self.attrs)
        for name in ("measured_host_s", "warm_host_s"):
            if data[name] is None:  # most traces have none: keep their files as they were
                del data[name]
        return data


@dataclass(frozen=True)
class Trace:
    """Ops in host program order plus free-form ``meta`` (model, phase, capture host, wall time)."""

    ops: tuple[Op, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ops)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "version": VERSION,
            "meta": dict(self.meta),
            "ops": [op.to_dict() for op in self.ops],
        }


def write_trace(trace: Trace, path: str | Path) -> Path:
    """Write ``trace`` as JSON, one op per line (gzip if the name ends in ``.gz``), atomically."""
    from sim.trace_stream import write_ops  # the file layout lives there; it imports this module

    return write_ops(path, trace.ops, meta=trace.meta)


def read_trace(path: str | Path) -> Trace:
    """Read and validate a trace file; every problem is an :class:`InputError` naming the field.

    Files in the one-op-per-line layout stream (no intermediate parse tree); any other JSON layout
    (e.g. pretty-printed) is parsed whole. Both give the same ops and the same errors.
    """
    from sim.trace_stream import load_trace

    return load_trace(path)


def trace_from_dict(data: object, *, source: str = "<trace>") -> Trace:
    """Validate parsed JSON against schema v1 and build a :class:`Trace`."""
    meta = check_header(data, source=source)
    raw_ops = data.get("ops")  # check_header made sure data is a mapping
    if not isinstance(raw_ops, list):
        raise InputError("expected a list of ops", source=source, field="ops")
    ops = tuple(op_from_dict(item, source=source, index=i) for i, item in enumerate(raw_ops))
    check_graph(ops, source=source)
    return Trace(ops=ops, meta=meta)


def check_header(data: object, *, source: str = "<trace>") -> dict[str, Any]:
    """Check a trace document's ``schema``, ``version`` and ``meta``; return the meta."""
    if not isinstance(data, Mapping):
        raise InputError("expected a JSON object", source=source)
    if data.get("schema") != SCHEMA:
        raise InputError(f"expected {SCHEMA!r}", source=source, field="schema")
    if data.get("version") != VERSION:
        raise InputError(f"unsupported version {data.get('version')!r} (this tksim reads "
                         f"{VERSION})", source=source, field="version")
    meta = data.get("meta", {})
    if not isinstance(meta, Mapping):
        raise InputError("expected an object", source=source, field="meta")
    return dict(meta)


def check_graph(ops: Sequence[Op], *, source: str = "<trace>") -> None:
    """Ids unique; every dep names an op issued earlier (else dangling or cyclic)."""
    index: dict[int, int] = {}
    for i, op in enumerate(ops):
        if op.id in index:
            raise InputError(f"duplicate op id {op.id}", source=source, field=f"ops[{i}].id")
        index[op.id] = i
    for i, op in enumerate(ops):
        for dep in op.deps:
            where = f"ops[{i}].deps"
            if dep not in index:
                raise InputError(f"dangling dependency on unknown op id {dep}", source=source,
                                 field=where)
            if index[dep] >= i:
                cycle = find_cycle({o.id: o.deps for o in ops}, op.id)
                raise InputError(forward_dep_message(dep, cycle), source=source, field=where)


def forward_dep_message(dep: int, cycle: Sequence[int]) -> str:
    """The error for a dependency on an op issued later: the cycle it closes, if any."""
    if cycle:
        return f"cyclic dependency: {' -> '.join(map(str, cycle))}"
    return f"depends on op {dep}, which is issued later (ops must be in program order)"


def find_cycle(deps: Mapping[int, Sequence[int]], start: int) -> list[int]:
    """A dependency cycle through op ``start``, as a list of ids, or [] if there is none.

    ``deps`` maps op ids to their deps (ids missing from it are dangling, reported elsewhere).
    """
    stack: list[tuple[int, list[int]]] = [(start, [start])]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        for dep in deps[node]:
            if dep == start:
                return [*path, dep]
            if dep not in seen and dep in deps:
                seen.add(dep)
                stack.append((dep, [*path, dep]))
    return []


def op_from_dict(item: object, *, source: str = "<trace>", index: int = 0) -> Op:
    """Validate one op object of schema v1 and build it; errors name ``ops[index].<field>``.

    Well-formed ops take a fast inline check; anything unusual takes the field-by-field reader,
    which builds the same :class:`Op` or raises the precise :class:`InputError`.
    """
    op = _fast_op(item)
    return op if op is not None else _op_from_dict(item, source, f"ops[{index}]")


def _fast_op(item: Any) -> Op | None:
    """The op if every field is present-or-default and plainly valid, else None (no errors here:
    it accepts a subset of what :func:`_op_from_dict` accepts and builds the same op).

    Inline checks on exact types (a bool is not an int here): ~4.4 us per op with three tensors
    against ~9.5 us through the reader (measured 2026-11 on this 2-core VM).
    """
    if type(item) is not dict or not _OP_FIELDS.issuperset(item):
        return None
    get = item.get
    op_id, name, category, phase = get("id"), get("name"), get("category"), get("phase", "forward")
    dtype, module, sync, attrs = get("dtype", "fp32"), get("module", ""), get("sync", False), get(
        "attrs", {})
    flops, read, written = get("flops", 0.0), get("bytes_read", 0.0), get("bytes_written", 0.0)
    stream, rank, kernels = get("stream", 0), get("rank", 0), get("num_kernels", 1)
    measured_s, deps = get("measured_s"), get("deps", [])
    host_s, warm_s = get("measured_host_s"), get("warm_host_s")
    if not (type(op_id) is int and op_id >= 0 and type(name) is str and type(module) is str
            and type(category) is str and category in _CATEGORY_SET and type(phase) is str
            and phase in _PHASE_SET and type(dtype) is str and dtype in DTYPE_BYTES
            and type(sync) is bool and type(attrs) is dict and type(deps) is list
            and type(stream) is int and stream >= 0 and type(rank) is int and rank >= 0
            and type(kernels) is int and kernels >= 0
            and type(flops) in _NUMBER and 0 <= flops <= _MAX_FLOPS
            and type(read) in _NUMBER and 0 <= read <= _MAX_BYTES
            and type(written) in _NUMBER and 0 <= written <= _MAX_BYTES
            and (measured_s is None or (type(measured_s) in _NUMBER and 0 <= measured_s <= 1e6))
            and (host_s is None or (type(host_s) in _NUMBER and 0 <= host_s <= 1e6))
            and (warm_s is None or (type(warm_s) in _NUMBER and 0 <= warm_s <= 1e6))):
        return None
    inputs, outputs = _fast_tensors(get("inputs", [])), _fast_tensors(get("outputs", []))
    if inputs is None or outputs is None or not all(type(dep) is int for dep in deps):
        return None
    return Op(id=op_id, name=name, category=category, flops=float(flops), bytes_read=float(read),
              bytes_written=float(written), deps=tuple(deps), inputs=inputs, outputs=outputs,
              dtype=dtype, stream=stream, rank=rank, module=module, phase=phase,
              num_kernels=kernels, sync=sync,
              measured_s=None if measured_s is None else float(measured_s), attrs=dict(attrs),
              measured_host_s=None if host_s is None else float(host_s),
              warm_host_s=None if warm_s is None else float(warm_s))


def _fast_tensors(items: Any) -> tuple[TensorMeta, ...] | None:
    if type(items) is not list:
        return None
    out = []
    for t in items:
        shape = t.get("shape") if type(t) is dict else None
        if type(shape) is not list:
            return None
        for d in shape:
            if type(d) is not int or d < 0:
                return None
        dtype = t.get("dtype")
        if type(dtype) is not str:
            return None
        key = (dtype, *shape)
        meta = _TENSOR_METAS.get(key)
        if meta is None:
            if dtype not in DTYPE_BYTES:
                return None
            if len(_TENSOR_METAS) >= _MAX_SHARED_TENSOR_METAS:
                _TENSOR_METAS.clear()
            meta = _TENSOR_METAS[key] = TensorMeta(shape=tuple(shape), dtype=dtype)
        out.append(meta)
    return tuple(out)


#: (dtype, *shape) -> its TensorMeta, shared by all ops (traces repeat a few hundred shapes: this
#: saves ~100 bytes per tensor of a large trace); cleared when it reaches the bound.
_TENSOR_METAS: dict[tuple, TensorMeta] = {}
_MAX_SHARED_TENSOR_METAS = 1 << 16


def _op_from_dict(item: object, source: str, where: str) -> Op:
    if not isinstance(item, Mapping):
        raise InputError("expected an object", source=source, field=where)
    unknown = set(item) - _OP_FIELDS
    if unknown:
        raise InputError("unknown field", source=source, field=f"{where}.{sorted(unknown)[0]}")
    get = _FieldReader(item, source, where)
    category = get.text("category")
    if category not in CATEGORIES:
        raise InputError(f"unknown category {category!r}; one of {', '.join(CATEGORIES)}",
                         source=source, field=f"{where}.category")
    phase = get.text("phase", "forward")
    if phase not in PHASES:
        raise InputError(f"unknown phase {phase!r}; one of {', '.join(PHASES)}", source=source,
                         field=f"{where}.phase")
    return Op(
        id=get.integer("id"),
        name=get.text("name"),
        category=category,
        flops=get.number("flops", 0.0, high=_MAX_FLOPS),
        bytes_read=get.number("bytes_read", 0.0, high=_MAX_BYTES),
        bytes_written=get.number("bytes_written", 0.0, high=_MAX_BYTES),
        deps=tuple(get.int_list("deps")),
        inputs=get.tensors("inputs"),
        outputs=get.tensors("outputs"),
        dtype=get.dtype("dtype"),
        stream=get.integer("stream", 0),
        rank=get.integer("rank", 0),
        module=get.text("module", ""),
        phase=phase,
        num_kernels=get.integer("num_kernels", 1),
        sync=bool(get.raw("sync", False, bool)),
        measured_s=get.number("measured_s", None, high=1e6),
        attrs=dict(get.raw("attrs", {}, Mapping)),
        measured_host_s=get.number("measured_host_s", None, high=1e6),
        warm_host_s=get.number("warm_host_s", None, high=1e6),
    )


_OP_FIELD_ORDER = tuple(Op.__dataclass_fields__)
_OP_FIELDS = frozenset(_OP_FIELD_ORDER)
_CATEGORY_SET = frozenset(CATEGORIES)
_PHASE_SET = frozenset(PHASES)
_NUMBER = (int, float)  # exact types: bool is not a number here


class _FieldReader:
    """Typed access to one op's fields, with errors naming ``ops[i].field``."""

    def __init__(self, item: Mapping, source: str, where: str):
        self.item, self.source, self.where = item, source, where

    def fail(self, key: str, message: str) -> InputError:
        return InputError(message, source=self.source, field=f"{self.where}.{key}")

    def raw(self, key: str, default: Any, kind: type | tuple[type, ...]) -> Any:
        if key not in self.item:
            if default is _REQUIRED:
                raise self.fail(key, "missing field")
            return default
        value = self.item[key]
        bad_bool = isinstance(value, bool) and kind is not bool
        if value is None and default is None:
            return None
        if not isinstance(value, kind) or bad_bool:
            raise self.fail(key, f"wrong type {type(value).__name__}")
        return value

    def text(self, key: str, default: Any = None) -> str:
        return self.raw(key, _REQUIRED if default is None else default, str)

    def integer(self, key: str, default: Any = None) -> int:
        value = self.raw(key, _REQUIRED if default is None else default, int)
        if value < 0:
            raise self.fail(key, f"must be >= 0, got {value}")
        return value

    def number(self, key: str, default: float | None, *, high: float) -> float | None:
        value = self.raw(key, default, (int, float))
        if value is None:
            return None
        if not math.isfinite(value) or value < 0:
            raise self.fail(key, f"must be a finite number >= 0, got {value}")
        if value > high:
            raise self.fail(key, f"absurd value {value:g} (> {high:g})")
        return float(value)

    def int_list(self, key: str) -> Iterable[int]:
        values = self.raw(key, [], list)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise self.fail(key, "expected a list of op ids")
        return values

    def dtype(self, key: str) -> str:
        value = self.raw(key, "fp32", str)
        if value not in DTYPE_BYTES:
            raise self.fail(key, f"unknown dtype {value!r}")
        return value

    def tensors(self, key: str) -> tuple[TensorMeta, ...]:
        out = []
        for j, t in enumerate(self.raw(key, [], list)):
            ok = isinstance(t, Mapping) and isinstance(t.get("shape"), list)
            if not ok or not all(isinstance(d, int) and d >= 0 for d in t["shape"]):
                raise self.fail(f"{key}[{j}]", "expected {shape: [non-negative ints], dtype}")
            if not isinstance(t.get("dtype"), str) or t["dtype"] not in DTYPE_BYTES:
                raise self.fail(f"{key}[{j}].dtype", f"unknown dtype {t.get('dtype')!r}")
            out.append(TensorMeta(shape=tuple(t["shape"]), dtype=t["dtype"]))
        return tuple(out)


_REQUIRED = object()
