"""Import a PyTorch execution trace (the JSON Chakra's converter reads) as a tksim trace.

Input: the file ``torch.profiler.ExecutionTraceObserver`` writes (schema ``1.x-chakra.0.0.4``):
``nodes``, each a recorded call or annotation with ``id`` (program order), ``name``, ``ctrl_deps``
(the id of the call it is nested in), ``inputs`` / ``outputs`` (parallel lists ``values``,
``shapes``, ``types``, ``strides``; a tensor's value is ``[tensor_id, storage_id, offset, numel,
itemsize, device]``) and ``attrs`` (``rf_id``, ``seq_id``, ``op_schema``, ...).

What is recorded and what is inferred:

- which calls become ops, their phase and module: :mod:`workloads.importers.call_tree` (module
  names only from ``record_function`` annotations: an execution trace has no ``nn.Module`` labels);
- category, FLOPs, bytes, attrs, shapes: rebuilt from the recorded arguments, overload named by
  ``op_schema`` (:mod:`workloads.importers.aten_call`);
- ``deps``: data dependencies from tensor storage identity, as capture derives them: an op depends
  on the last writer of each storage it reads, and an op that writes a storage (a fresh output, or
  an argument its schema marks ``Tensor(a!)``) also on that storage's last writer and its readers
  since; a view writes nothing. A fresh output is a new allocation even where the observer
  reuses the storage id of freed memory (so no false write-after-write dependency), and the
  scalar tensor of a Python number is no data. On the forwards of a small attention block,
  gpt2-tiny and llama-tiny this gives exactly the deps of a dispatch-mode capture;
- ``measured_s``: None, unless ``profiler_trace`` names the Kineto trace recorded in the same run
  (``profile(execution_trace_observer=...)``): then each op takes the measurement of the profiler
  call with the same record function id (``rf_id``), as :func:`import_torch_profiler` measures.

A node carrying a ``tksim_op`` attribute was written by :func:`export_chakra`: it becomes exactly
that op (its fields validated as a tksim trace's), so tksim -> execution trace -> tksim is lossless
(but for a ``tf32`` tensor dtype, stored as float).

Lifecycle: :func:`import_chakra` reads and validates the file, builds the call tree, selects and
prices ops, derives deps, and attaches profiler measurements.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sim.errors import InputError
from sim.trace import Op, Trace, op_from_dict
from workloads.importers.aten_call import (
    NONE,
    SCALAR,
    TENSOR,
    TENSORS,
    UNKNOWN,
    CallPricer,
    PricedCall,
    RecordedArg,
    freeze,
    resolve_op,
    split_schema,
    torch_dtype,
)
from workloads.importers.call_tree import (
    ANNOTATION,
    FRAME,
    OP,
    CallNode,
    Selected,
    is_backward_node,
    mark_subtrees,
    select_calls,
)
from workloads.importers.torch_profiler import load_json, measured_calls
from workloads.tensors import dtype_name

__all__ = ["import_chakra", "ET_SCHEMA", "TKSIM_OP_ATTR", "ROOT_NAMES"]

#: The schema torch 2.13's ExecutionTraceObserver writes (and :func:`export_chakra` writes).
ET_SCHEMA = "1.1.1-chakra.0.0.4"
#: Attribute of an exported node holding the tksim op fields an execution trace cannot express.
TKSIM_OP_ATTR = "tksim_op"
ROOT_NAMES = ("[pytorch|profiler|execution_trace|process]",
              "[pytorch|profiler|execution_trace|thread]")


def import_chakra(path: str | Path, *, profiler_trace: str | Path | None = None) -> Trace:
    """Read an execution trace JSON and return it as a :class:`~sim.trace.Trace` (module doc)."""
    source = str(path)
    doc = load_json(path)
    nodes = _nodes(doc, source)
    if any(TKSIM_OP_ATTR in node["_attrs"] for node in nodes):
        return _exported_trace(doc, nodes, source)
    roots = _call_tree(nodes)
    pricer = CallPricer()
    chosen = sorted(select_calls(roots, pricer), key=lambda s: s.node.order)
    if not chosen:
        raise InputError("no operator nodes (aten:: calls) in the trace", source=source,
                         field="nodes")
    measures = measured_calls(profiler_trace) if profiler_trace is not None else {}
    ops = _ops(chosen, pricer, measures)
    meta = {"source": "execution_trace", "source_file": Path(path).name,
            "schema": doc["schema"], "num_nodes": len(nodes),
            "timing_scope": "none" if profiler_trace is None else "profiler",
            "profiler_trace": None if profiler_trace is None else Path(profiler_trace).name,
            "num_measured": sum(op.measured_s is not None for op in ops)}
    return Trace(ops=tuple(ops), meta=meta)


# --- validation and the call tree -----------------------------------------------------------------

def _nodes(doc: Any, source: str) -> list[dict]:
    """The nodes, checked, with their attrs as a dict under ``_attrs``, sorted by id."""
    nodes = doc.get("nodes") if isinstance(doc, Mapping) else None
    if not isinstance(nodes, list):
        raise InputError("not an execution trace: expected an object with a 'nodes' list",
                         source=source, field="nodes")
    if not isinstance(doc.get("schema"), str):
        raise InputError("missing or not a string", source=source, field="schema")
    out = []
    for i, node in enumerate(nodes):
        where = f"nodes[{i}]"
        if not isinstance(node, Mapping):
            raise InputError("expected an object", source=source, field=where)
        for key, kind in (("id", int), ("name", str), ("ctrl_deps", int), ("inputs", Mapping),
                          ("outputs", Mapping), ("attrs", list)):
            if not isinstance(node.get(key), kind) or isinstance(node.get(key), bool):
                raise InputError(f"missing or not {kind.__name__}", source=source,
                                 field=f"{where}.{key}")
        for key in ("inputs", "outputs"):
            _check_io(node[key], source, f"{where}.{key}")
        attrs = {a.get("name"): a.get("value") for a in node["attrs"] if isinstance(a, Mapping)}
        out.append({**node, "_attrs": attrs, "_index": i})
    return sorted(out, key=lambda n: n["id"])


def _check_io(io: Mapping, source: str, where: str) -> None:
    lists = [io.get(key) for key in ("values", "shapes", "types")]
    if not all(isinstance(v, list) for v in lists) or len({len(v) for v in lists}) != 1:
        raise InputError("expected lists 'values', 'shapes', 'types' of one length",
                         source=source, field=where)


def _call_tree(nodes: list[dict]) -> list[CallNode]:
    """CallNodes nested by ``ctrl_deps`` (nodes sorted by id); the roots."""
    by_id: dict[int, CallNode] = {}
    roots, tree = [], []
    for node in nodes:
        call = _call_node(node)
        parent = by_id.get(node["ctrl_deps"]) if node["ctrl_deps"] != node["id"] else None
        if parent is None:
            roots.append(call)
        else:
            parent.adopt(call)
        by_id[node["id"]] = call
        tree.append(call)
    mark_subtrees(tree)
    return roots


def _call_node(node: Mapping) -> CallNode:
    name, attrs = node["name"], node["_attrs"]
    schema_name, overload = split_schema(attrs.get("op_schema") or "")
    if name in ROOT_NAMES:
        kind = FRAME
    elif overload is not None or resolve_op(name) is not None or is_backward_node(name):
        kind = OP
    else:
        kind = ANNOTATION
    seq = attrs.get("seq_id")
    return CallNode(name=name, kind=kind, order=node["id"], args=_arguments(node["inputs"]),
                    overload=overload if schema_name == name else None,
                    outputs=_arguments(node["outputs"]),
                    seq=seq if isinstance(seq, int) and seq >= 0 else None, source=node)


# --- recorded arguments ---------------------------------------------------------------------------

def _arguments(io: Mapping) -> tuple[RecordedArg, ...]:
    strides = io.get("strides")
    strides = strides if isinstance(strides, list) and len(strides) == len(io["values"]) else [
        None] * len(io["values"])
    return tuple(_argument(v, s, t, st)
                 for v, s, t, st in zip(io["values"], io["shapes"], io["types"], strides,
                                        strict=True))


def _argument(value: Any, shape: Any, type_name: Any, strides: Any) -> RecordedArg:
    if not isinstance(type_name, str):
        return RecordedArg(UNKNOWN)
    if type_name.startswith(("Tensor(nullptr", "Tensor(undefined")):
        return RecordedArg(NONE)  # an undefined tensor: None for a Tensor? argument
    if type_name.startswith("Tensor(") and _is_shape(shape):
        return RecordedArg(TENSOR, type_name[7:-1], tuple(shape), _shape_or_none(strides))
    if type_name.startswith("GenericList[Tensor"):
        return _tensor_list(shape, type_name, strides)
    if type_name == "None":
        return RecordedArg(NONE)
    if isinstance(value, list | int | float | str | bool):
        return RecordedArg(SCALAR, value=freeze(value))
    return RecordedArg(UNKNOWN)


def _tensor_list(shape: Any, type_name: str, strides: Any) -> RecordedArg:
    """A ``GenericList[Tensor(float),...]`` argument (None elements allowed)."""
    items = _split_list_type(type_name)
    if not isinstance(shape, list) or len(items) != len(shape):
        return RecordedArg(UNKNOWN)
    is_tensor = [t.startswith("Tensor(") and _is_shape(s)
                 for t, s in zip(items, shape, strict=True)]
    dtypes = tuple(t[7:-1] if ok else "" for t, ok in zip(items, is_tensor, strict=True))
    shapes = tuple(tuple(s) if ok else None for s, ok in zip(shape, is_tensor, strict=True))
    item_strides = None
    if isinstance(strides, list) and len(strides) == len(shape):
        item_strides = tuple(_shape_or_none(st) for st in strides)
    return RecordedArg(TENSORS, dtypes, shapes, item_strides)


def _split_list_type(type_name: str) -> list[str]:
    inner = type_name[len("GenericList["):-1]
    return [t for t in inner.split(",") if t] if inner else []


def _is_shape(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(d, int) and d >= 0 for d in value)


def _shape_or_none(value: Any) -> tuple | None:
    return tuple(value) if _is_shape(value) else None


# --- ops and their data dependencies --------------------------------------------------------------

def _ops(chosen: Sequence[Selected], pricer: CallPricer,
         measures: Mapping[int, tuple[float, int, int]]) -> list[Op]:
    deps = _StorageDeps()
    ops: list[Op] = []
    for i, selected in enumerate(chosen):
        node = selected.node
        priced = pricer.price(node.name, node.args or (), overload=node.overload,
                              outputs=node.outputs)
        measured = measures.get(node.source["_attrs"].get("rf_id"))
        measured_s, num_kernels, stream = measured if measured is not None else (None, 1, 0)
        if num_kernels == 0 and ops:  # an op without kernels stays on the stream it follows
            stream = ops[-1].stream
        ops.append(Op(
            id=i, name=node.name, category=priced.category, flops=priced.flops,
            bytes_read=priced.bytes_read, bytes_written=priced.bytes_written,
            deps=deps.add(i, node.source, priced), inputs=priced.inputs, outputs=priced.outputs,
            dtype=priced.dtype, stream=stream, module=selected.module, phase=selected.phase,
            num_kernels=num_kernels, sync=priced.sync, measured_s=measured_s,
            attrs=dict(priced.attrs)))
    return ops


class _StorageDeps:
    """Data dependencies from storage ids (module doc). Lifecycle: :meth:`add` per op in order."""

    def __init__(self) -> None:
        self.last_writer: dict[Any, int] = {}
        self.readers: dict[Any, set[int]] = {}

    def add(self, op_id: int, node: Mapping, priced: PricedCall) -> tuple[int, ...]:
        """Record op ``op_id`` (an execution trace node) and return its deps, sorted.

        A fresh output (not an input, not a mutated argument) is a new allocation even when the
        observer reuses the storage id of freed memory: it depends on nothing.
        """
        inputs = node["inputs"]["values"]
        # a Python number's scalar tensor is no data (its storage id may be freed memory's)
        reads = _storages([v for i, v in enumerate(inputs) if i not in priced.numbers])
        mutated = set() if priced.is_view else {
            s for i in priced.mutated if i < len(inputs) for s in _storages([inputs[i]])}
        fresh = set() if priced.is_view else _storages(node["outputs"]["values"]) - reads
        found = {self.last_writer[s] for s in reads | mutated if s in self.last_writer}
        for s in mutated:
            found |= self.readers.get(s, set())
        if not priced.is_view:
            for s in reads - mutated:
                self.readers.setdefault(s, set()).add(op_id)
        for s in mutated | fresh:
            self.last_writer[s], self.readers[s] = op_id, set()
        return tuple(sorted(found - {op_id}))


def _storages(values: Sequence[Any]) -> set[Any]:
    """Storage ids of the tensors among argument values (tensor tuples, lists of them)."""
    out = set()
    for value in values:
        if _is_tensor_tuple(value):
            out.add((value[1], value[5]))  # (storage id, device)
        elif isinstance(value, list):
            out |= {(v[1], v[5]) for v in value if _is_tensor_tuple(v)}
    return out


def _is_tensor_tuple(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 6 and isinstance(value[1], int) and \
        isinstance(value[5], str)


# --- nodes written by export_chakra ---------------------------------------------------------------

def _exported_trace(doc: Mapping, nodes: list[dict], source: str) -> Trace:
    """The tksim trace an exported file holds: one op per ``tksim_op`` node, in id order."""
    ops = []
    for node in nodes:
        text = node["_attrs"].get(TKSIM_OP_ATTR)
        if text is None:
            continue
        where = f"nodes[{node['_index']}]"
        try:
            fields = json.loads(text)
        except (TypeError, json.JSONDecodeError) as exc:
            raise InputError(f"malformed JSON: {exc}", source=source,
                             field=f"{where}.attrs.{TKSIM_OP_ATTR}") from None
        if not isinstance(fields, dict):
            raise InputError("expected an object", source=source,
                             field=f"{where}.attrs.{TKSIM_OP_ATTR}")
        fields["name"] = node["name"]
        fields["inputs"] = _tensor_dicts(node["inputs"])
        fields["outputs"] = _tensor_dicts(node["outputs"])
        ops.append(op_from_dict(fields, source=source, index=len(ops)))
    meta = doc.get("tksim_meta")
    return Trace(ops=tuple(ops), meta=dict(meta) if isinstance(meta, Mapping) else {})


def _tensor_dicts(io: Mapping) -> list[dict]:
    """Every tensor of a node's inputs or outputs as ``{shape, dtype}`` (lists flattened)."""
    out = []
    for arg in _arguments(io):
        items = [(arg.dtype, arg.shape)] if arg.kind == TENSOR else (
            zip(arg.dtype, arg.shape, strict=True) if arg.kind == TENSORS else [])
        for type_name, shape in items:
            if shape is not None:
                out.append({"shape": list(shape), "dtype": _tksim_dtype(type_name)})
    return out


def _tksim_dtype(type_name: str) -> str:
    dtype = torch_dtype(type_name)
    try:
        return dtype_name(dtype) if dtype is not None else type_name
    except InputError:
        return type_name  # op_from_dict reports it as an unknown dtype

