"""The cost of an aten call known only from a trace's record of it: shapes, dtypes, scalars.

Profiler and execution traces keep each call's arguments as metadata, not tensors. To cost such a
call the way the dispatch-mode recorder costs a live one, :class:`CallPricer` rebuilds it: it picks
the op's overload from the recorded argument kinds (or takes the one the trace names), makes fake
tensors of the recorded shapes, dtypes and strides under ``FakeTensorMode`` (no memory, no data),
runs the op to get its outputs (shape inference, aliasing) and hands the call to
:func:`workloads.op_costs.op_cost`: same categories, FLOPs, bytes and attrs as a capture.

When the call cannot be rebuilt (an op this torch does not know, an argument the trace did not
keep, an op with data-dependent outputs, a CUDA-only op with no fake kernel) it is priced from its
recorded shapes: category ``other`` (or ``collective`` for ``c10d`` ops), 0 FLOP, every recorded
input read and every recorded output written (a profiler trace records no outputs).

Lifecycle: one :class:`CallPricer` per imported file (it owns one ``FakeTensorMode``);
:meth:`CallPricer.price` per call, cached by the call's recorded signature.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from sim.errors import InputError
from sim.trace import TensorMeta
from sim.units import DTYPE_BYTES
from workloads.op_costs import OpCall, op_cost
from workloads.tensors import TORCH_DTYPES, dtype_name, storage_ref, tensor_meta, tensors_in

__all__ = ["RecordedArg", "PricedCall", "CallPricer", "TENSOR", "TENSORS", "SCALAR", "NONE",
           "UNKNOWN", "TYPE_NAMES", "torch_dtype", "resolve_op", "is_decomposed", "split_schema",
           "freeze"]

# Kinds of a recorded argument.
TENSOR, TENSORS, SCALAR, NONE, UNKNOWN = "tensor", "tensors", "scalar", "none", "unknown"

#: C++ element type names as profilers and execution traces write them -> torch dtype.
_TORCH_DTYPES: dict[str, torch.dtype] = {
    "float": torch.float32, "double": torch.float64, "c10::Half": torch.float16,
    "c10::BFloat16": torch.bfloat16, "long int": torch.int64, "long": torch.int64,
    "int64_t": torch.int64, "int": torch.int32, "short int": torch.int16, "short": torch.int16,
    "signed char": torch.int8, "unsigned char": torch.uint8, "bool": torch.bool,
    "c10::Float8_e4m3fn": torch.float8_e4m3fn, "c10::Float8_e5m2": torch.float8_e5m2,
    "c10::complex<float>": torch.complex64, "c10::complex<double>": torch.complex128,
}
#: tksim dtype -> the C++ type name a trace writes (tf32 is stored as float).
TYPE_NAMES: dict[str, str] = {
    "fp64": "double", "fp32": "float", "tf32": "float", "bf16": "c10::BFloat16",
    "fp16": "c10::Half", "fp8": "c10::Float8_e4m3fn", "int64": "long int", "int32": "int",
    "int16": "short int", "int8": "signed char", "uint8": "unsigned char", "bool": "bool",
}
_COLLECTIVE_KINDS = (("all_reduce", "allreduce"), ("allreduce", "allreduce"),
                     ("all_gather", "allgather"), ("allgather", "allgather"),
                     ("reduce_scatter", "reducescatter"), ("all_to_all", "alltoall"),
                     ("alltoall", "alltoall"))


def freeze(value: Any) -> Any:
    """A recorded scalar value, hashable: lists (nested too) become tuples."""
    return tuple(map(freeze, value)) if isinstance(value, list | tuple) else value


def _thaw(value: Any) -> Any:
    return list(map(_thaw, value)) if isinstance(value, tuple) else value


def torch_dtype(type_name: str) -> torch.dtype | None:
    """The torch dtype of a recorded element type name (``"c10::BFloat16"``), None if unknown."""
    return _TORCH_DTYPES.get(type_name)


@dataclass(frozen=True, slots=True)
class RecordedArg:
    """One argument of a recorded call, in schema order.

    ``kind`` is one of TENSOR, TENSORS (a list), SCALAR (``value`` a number, bool, string or a
    tuple of them), NONE (recorded as absent) or UNKNOWN (the trace did not say). For tensors
    ``dtype`` is the C++ element type name, ``shape`` the shape (a tuple of shapes for TENSORS)
    and ``strides`` alike, or None for contiguous.
    """

    kind: str
    dtype: str | tuple[str, ...] = ""
    shape: tuple = ()
    strides: tuple | None = None
    value: Any = None


@dataclass(frozen=True, slots=True)
class PricedCall:
    """What the cost formulas say about one call, plus what a dependency tracker needs.

    ``mutated`` are the indexes of arguments the schema marks as written (``Tensor(a!)``),
    ``numbers`` those of tensors taken as Python numbers (see :func:`_wrapped_number`); ``how`` is
    ``"replayed"`` (rebuilt on fake tensors) or ``"shapes"`` (priced from shapes).
    """

    category: str
    dtype: str
    flops: float
    bytes_read: float
    bytes_written: float
    inputs: tuple[TensorMeta, ...]
    outputs: tuple[TensorMeta, ...]
    sync: bool = False
    attrs: Mapping[str, Any] = field(default_factory=dict)
    is_view: bool = False
    mutated: tuple[int, ...] = ()
    numbers: tuple[int, ...] = ()
    how: str = "replayed"


@cache
def resolve_op(name: str) -> torch._ops.OpOverloadPacket | None:
    """``torch.ops.<ns>.<op>`` for a recorded name such as ``aten::mm``; None if not an op."""
    namespace, sep, op = name.partition("::")
    if not sep or not op.isidentifier() or not namespace.isidentifier():
        return None
    try:
        return getattr(getattr(torch.ops, namespace), op)
    except (AttributeError, RuntimeError):
        return None


def is_decomposed(func: torch._ops.OpOverload) -> bool:
    """True for a CompositeImplicitAutograd op (``linear``, ``matmul``, ``layer_norm``, ...):
    below autograd it runs as other aten ops, which are what a capture records."""
    return torch._C._dispatch_has_kernel_for_dispatch_key(func.name(), "CompositeImplicitAutograd")


def split_schema(schema: str) -> tuple[str, str | None]:
    """``"aten::add.Tensor(Tensor self, ...)"`` -> ``("aten::add", "Tensor")``; overload None when
    the text has no schema; ``"default"`` when the schema names none."""
    match = re.match(r"^([\w:]+?)(?:\.(\w+))?\(", schema or "")
    if not match:
        return schema, None
    return match.group(1), match.group(2) or "default"


class CallPricer:
    """Prices recorded calls (see the module doc); one per imported file."""

    def __init__(self) -> None:
        self.mode = FakeTensorMode()
        self._cache: dict[tuple, PricedCall] = {}

    def overload(self, name: str, args: Sequence[RecordedArg], overload: str | None = None
                 ) -> torch._ops.OpOverload | None:
        """The overload of ``name`` that takes ``args`` (or the one named), None if none does."""
        packet = resolve_op(name)
        if packet is None:
            return None
        if overload is not None:
            return getattr(packet, overload, None) if overload in packet.overloads() else None
        names = sorted(packet.overloads(), key=lambda o: (o != "default", "out" in o))
        for candidate in names:
            func = getattr(packet, candidate)
            params = func._schema.arguments
            if len(params) == len(args) and all(map(_fits, args, params)):
                return func
        return None

    def price(self, name: str, args: Sequence[RecordedArg], *, overload: str | None = None,
              outputs: Sequence[RecordedArg] = ()) -> PricedCall:
        """The cost of one recorded call (cached by its signature)."""
        key = (name, overload, tuple(args), tuple(outputs))
        priced = self._cache.get(key)
        if priced is None:
            func = self.overload(name, args, overload)
            priced = (self._replay(func, args, outputs) if func is not None else None) or \
                _from_shapes(name, args, outputs)
            self._cache[key] = priced
        return priced

    def _replay(self, func: torch._ops.OpOverload, args: Sequence[RecordedArg],
                recorded_outputs: Sequence[RecordedArg]) -> PricedCall | None:
        """Rebuild and cost the call on fake tensors; None if it cannot be rebuilt."""
        params = func._schema.arguments
        try:
            with self.mode:
                values = [self._value(arg, param, i == 0)
                          for i, (arg, param) in enumerate(zip(args, params, strict=True))]
                outputs = self._run(func, params, values, recorded_outputs)
            inputs = tensors_in(values)
            bound = {param.name: value for param, value in zip(params, values, strict=True)}
            mutated = tuple(i for i, p in enumerate(params)
                            if p.alias_info is not None and p.alias_info.is_write)
            is_view = _is_view(func, inputs, outputs, [values[i] for i in mutated])
            cost = op_cost(OpCall(name=func.overloadpacket._qualified_op_name, args=bound,
                                  inputs=inputs, outputs=outputs, is_view=is_view,
                                  tags=frozenset(func.tags)))
            return PricedCall(
                category=cost.category, dtype=cost.dtype, flops=float(cost.flops),
                bytes_read=float(cost.bytes_read), bytes_written=float(cost.bytes_written),
                inputs=tuple(map(tensor_meta, inputs)), outputs=tuple(map(tensor_meta, outputs)),
                sync=cost.sync, attrs=dict(cost.attrs), is_view=is_view, mutated=mutated,
                numbers=tuple(i for i, (arg, value) in enumerate(zip(args, values, strict=True))
                              if arg.kind == TENSOR and not isinstance(value, torch.Tensor)))
        except Exception:  # noqa: BLE001 - any failure to rebuild means: price from shapes
            return None

    def _run(self, func, params, values: list, recorded_outputs: Sequence[RecordedArg]) -> list:
        """The call's output tensors: run on fake tensors, else the recorded outputs."""
        positional = [v for p, v in zip(params, values, strict=True) if not p.kwarg_only]
        keywords = {p.name: v for p, v in zip(params, values, strict=True) if p.kwarg_only}
        try:
            outputs = tensors_in(func(*positional, **keywords))
        except Exception:  # noqa: BLE001 - data-dependent or unsupported on fake tensors
            outputs = tensors_in([_fake(arg) for arg in recorded_outputs if arg.kind == TENSOR])
        # rng states and seeds (uint64) have no tksim dtype; they are a few bytes
        return [t for t in outputs if t.dtype in TORCH_DTYPES]

    def _value(self, arg: RecordedArg, param, first: bool) -> Any:
        """A Python value for one schema parameter: fake tensors for tensors."""
        base = _base_kind(param.type)
        if base == "DeviceObjType":  # fake CUDA tensors need a CUDA build: stay on this CPU
            return None if param.type.kind() == "OptionalType" else torch.device("cpu")
        if arg.kind == TENSOR:
            if _wrapped_number(arg, param, first):
                return 1 if arg.dtype != "double" else 1.0
            return _fake(arg)
        if arg.kind == TENSORS:
            return [None if shape is None else _fake(RecordedArg(TENSOR, dtype, shape, strides))
                    for dtype, shape, strides in _list_items(arg)]
        if arg.kind == SCALAR and arg.value is not None:
            return _thaw(arg.value)
        if param.has_default_value():
            return param.default_value
        if param.type.kind() == "OptionalType" or base == "GeneratorType":
            return None
        raise ValueError(f"no value recorded for {param.name}")


def _fits(arg: RecordedArg, param) -> bool:
    """Whether a recorded argument can be passed as schema parameter ``param``."""
    kind, base = param.type.kind(), _base_kind(param.type)
    is_list = base == "ListType"
    items = _unoptional(param.type).getElementType() if is_list else None
    list_of_tensors = is_list and _base_kind(items) == "TensorType"
    if arg.kind == TENSOR:
        return base == "TensorType"
    if arg.kind == TENSORS:
        return list_of_tensors
    if arg.kind == SCALAR:
        if isinstance(arg.value, tuple):
            return is_list and not list_of_tensors
        return base not in ("TensorType", "ListType")
    if arg.kind == NONE:
        return kind == "OptionalType" or base not in ("TensorType", "ListType")
    return True


def _wrapped_number(arg: RecordedArg, param, first: bool) -> bool:
    """A Python number passed where the schema takes a tensor (``x + 1``): traces record it as a
    0-dim int64 / float64 tensor, a capture sees the number. Taken as such when it is a 0-dim
    ``long int`` / ``double`` tensor, not the first argument, for a plain, unwritten Tensor."""
    return (not first and arg.shape == () and arg.dtype in _WRAPPED_TYPES
            and param.type.kind() == "TensorType"
            and (param.alias_info is None or not param.alias_info.is_write))


_WRAPPED_TYPES = frozenset({"long int", "long", "int64_t", "double"})


def _unoptional(jit_type):
    return jit_type.getElementType() if jit_type.kind() == "OptionalType" else jit_type


def _base_kind(jit_type) -> str:
    return _unoptional(jit_type).kind()


def _list_items(arg: RecordedArg):
    """(dtype, shape, strides) of each element of a TENSORS argument (shape None: a None)."""
    dtypes = arg.dtype if isinstance(arg.dtype, tuple) else (arg.dtype,) * len(arg.shape)
    strides = arg.strides if arg.strides and len(arg.strides) == len(arg.shape) else (
        (None,) * len(arg.shape))
    return zip(dtypes, arg.shape, strides, strict=True)


def _fake(arg: RecordedArg) -> torch.Tensor:
    """An empty tensor of the recorded shape, strides and dtype (fake inside FakeTensorMode)."""
    dtype = torch_dtype(str(arg.dtype))
    if dtype is None:
        raise ValueError(f"unknown element type {arg.dtype!r}")
    strides = arg.strides if arg.strides and len(arg.strides) == len(arg.shape) else None
    if strides is None:
        return torch.empty(arg.shape, dtype=dtype)
    return torch.empty_strided(arg.shape, strides, dtype=dtype)


def _is_view(func, inputs: list, outputs: list, mutated_values: list) -> bool:
    """The recorder's rule: a view op, or outputs that all alias inputs with nothing written."""
    if func.is_view or torch.Tag.inplace_view in func.tags:
        return True
    if not outputs or tensors_in(mutated_values):
        return False
    read = {ref.cdata for ref in map(storage_ref, inputs) if ref is not None}
    return all((ref := storage_ref(t)) is not None and ref.cdata in read for t in outputs)


def _from_shapes(name: str, args: Sequence[RecordedArg],
                 outputs: Sequence[RecordedArg]) -> PricedCall:
    """Price a call from its recorded shapes alone (see the module doc)."""
    inputs = [m for arg in args for m in _metas(arg)]
    outs = [m for arg in outputs for m in _metas(arg)]
    read = sum(nbytes for _, nbytes in inputs)
    floats = [meta.dtype for meta, _ in inputs if meta.dtype.startswith(("fp", "bf", "tf"))]
    dtype = (floats or [meta.dtype for meta, _ in inputs] or ["fp32"])[0]
    category, attrs = _collective(name, read)
    return PricedCall(category=category, dtype=dtype, flops=0.0, bytes_read=float(read),
                      bytes_written=float(sum(nbytes for _, nbytes in outs)),
                      inputs=tuple(meta for meta, _ in inputs),
                      outputs=tuple(meta for meta, _ in outs), sync=False, attrs=attrs,
                      how="shapes")


def _metas(arg: RecordedArg) -> list[tuple[TensorMeta, float]]:
    """(TensorMeta, distinct bytes) of each tensor in ``arg`` whose dtype tksim knows."""
    if arg.kind == TENSOR:
        items = [(arg.dtype, arg.shape, arg.strides)]
    elif arg.kind == TENSORS:
        items = [item for item in _list_items(arg) if item[1] is not None]
    else:
        return []
    out = []
    for type_name, shape, strides in items:
        dtype = torch_dtype(str(type_name))
        try:
            name = dtype_name(dtype) if dtype is not None else None
        except InputError:
            name = None
        if name is not None:
            distinct = math.prod(d for d, s in zip(shape, strides or (1,) * len(shape),
                                                   strict=False) if s != 0)
            out.append((TensorMeta(tuple(shape), name), distinct * DTYPE_BYTES[name]))
    return out


def _collective(name: str, bytes_read: float) -> tuple[str, dict[str, Any]]:
    """(``collective`` or ``send_recv``, {kind, bytes}) for a ``c10d`` op, else ``other``.

    ``bytes`` is the input buffer; an importer that knows the group size scales an all-gather's.
    """
    if not name.startswith(("c10d::", "_c10d_functional::")):
        return "other", {}
    op = name.partition("::")[2]
    if op.startswith(("send", "recv")):
        return "send_recv", {"kind": "sendrecv", "bytes": bytes_read}
    for pattern, kind in _COLLECTIVE_KINDS:
        if pattern in op:
            return "collective", {"kind": kind, "bytes": bytes_read}
    return "other", {}
