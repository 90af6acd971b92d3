"""Traces: a DAG of ops in program order, captured from a PyTorch run (schema ``tksim.trace`` 1).

An :class:`Op` is one framework-level operation (an aten op, a collective, an optimizer step) with
what the cost model needs to re-time it on any device: category, shapes and dtypes, FLOPs, bytes
read and written, and ``attrs`` that give it a device-neutral meaning (a GEMM's ``b, m, n, k``; an
attention's ``b, h_q, h_kv, s_q, s_k, d, causal``). ``deps`` are the ids of ops whose outputs it
reads; ops are listed in the order the host issued them. ``measured_s`` is the op's duration on the
machine it was captured on, when it was measured.

On disk a trace is JSON (gzip when the name ends in ``.gz``); see ``docs/trace-format.md``.
:func:`read_trace` validates everything and fails with one line naming the file and field.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sim.errors import InputError
from sim.files import write_atomic
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

    @property
    def bytes_total(self) -> float:
        return self.bytes_read + self.bytes_written

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["deps"] = list(self.deps)
        data["inputs"] = [{"shape": list(t.shape), "dtype": t.dtype} for t in self.inputs]
        data["outputs"] = [{"shape": list(t.shape), "dtype": t.dtype} for t in self.outputs]
        data["attrs"] = dict(self.attrs)
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
    """Write ``trace`` as JSON (gzip if the name ends in ``.gz``), atomically."""
    text = json.dumps(trace.to_dict(), separators=(",", ":"), sort_keys=True)
    return write_atomic(path, text)


def read_trace(path: str | Path) -> Trace:
    """Read and validate a trace file; every problem is an :class:`InputError` naming the field."""
    path = Path(path)
    source = str(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        data = json.loads(raw)
    except FileNotFoundError:
        raise InputError("no such trace file", source=source) from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(f"corrupt or unreadable trace: {exc}", source=source) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"malformed JSON: {exc}", source=source) from None
    return trace_from_dict(data, source=source)


def trace_from_dict(data: object, *, source: str = "<trace>") -> Trace:
    """Validate parsed JSON against schema v1 and build a :class:`Trace`."""
    if not isinstance(data, Mapping):
        raise InputError("expected a JSON object", source=source)
    if data.get("schema") != SCHEMA:
        raise InputError(f"expected {SCHEMA!r}", source=source, field="schema")
    if data.get("version") != VERSION:
        raise InputError(f"unsupported version {data.get('version')!r} (this tksim reads "
                         f"{VERSION})", source=source, field="version")
    raw_ops = data.get("ops")
    if not isinstance(raw_ops, list):
        raise InputError("expected a list of ops", source=source, field="ops")
    meta = data.get("meta", {})
    if not isinstance(meta, Mapping):
        raise InputError("expected an object", source=source, field="meta")
    ops = tuple(_op_from_dict(item, source, f"ops[{i}]") for i, item in enumerate(raw_ops))
    check_graph(ops, source=source)
    return Trace(ops=ops, meta=dict(meta))


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
                cycle = _find_cycle(ops, index, i)
                message = (f"cyclic dependency: {' -> '.join(map(str, cycle))}" if cycle else
                           f"depends on op {dep}, which is issued later (ops must be in "
                           "program order)")
                raise InputError(message, source=source, field=where)


def _find_cycle(ops: Sequence[Op], index: Mapping[int, int], start: int) -> list[int]:
    """A dependency cycle through ops[start], as a list of ids, or [] if there is none."""
    target = ops[start].id
    stack: list[tuple[int, list[int]]] = [(target, [target])]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        for dep in ops[index[node]].deps:
            if dep == target:
                return [*path, dep]
            if dep not in seen and dep in index:
                seen.add(dep)
                stack.append((dep, [*path, dep]))
    return []


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
    )


_OP_FIELDS = set(Op.__dataclass_fields__)


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
            if t.get("dtype") not in DTYPE_BYTES:
                raise self.fail(f"{key}[{j}].dtype", f"unknown dtype {t.get('dtype')!r}")
            out.append(TensorMeta(shape=tuple(t["shape"]), dtype=t["dtype"]))
        return tuple(out)


_REQUIRED = object()
