"""Export a tksim trace as a PyTorch execution trace JSON, the input of MLCommons Chakra's tools.

Layout: what ``ExecutionTraceObserver`` writes (schema ``1.1.1-chakra.0.0.4``): top-level
``schema``, ``pid``, ``time``, ``start_ts``, ``finish_ts``, ``nodes``; a process root node (id 1)
and a thread root node (id 2); then one node per op, in program order (ids 3, 4, ...), nested in
the thread (``ctrl_deps`` 2), with ``inputs`` / ``outputs`` (``values``, ``shapes``, ``types``,
``strides``) and the ``attrs`` Chakra's converter reads (``rf_id``, ``fw_parent``, ``seq_id``,
``scope``, ``tid``, ``fw_tid``, ``op_schema``, ...).

What an execution trace cannot say is kept, not lost:

- tensors: only tensor arguments are written (a tksim op keeps no scalars). Each output is a fresh
  tensor in a fresh storage (a view's output shares its first input's storage; an in-place op
  returns its first input). Each input is an output of one of the op's deps with the same shape
  and dtype when there is one, else a fresh tensor (like a parameter: no writer). So storage
  identity carries the deps a reader can see through tensors; strides are contiguous;
- everything else (category, FLOPs, bytes, attrs, the exact deps, module, phase, stream, rank,
  num_kernels, sync, measured_s) is the JSON text of the node attribute ``tksim_op``, which
  Chakra's converter ignores and :func:`import_chakra` reads back; the trace's ``meta`` is the
  top-level ``tksim_meta``;
- durations: an op with ``measured_s`` gets ``inclusive_dur`` / ``exclusive_dur`` in
  microseconds, the fields Chakra's converter takes durations from (as its ``trace_link`` writes).

Lifecycle: :func:`export_chakra` builds the document and writes it atomically (gzip for ``.gz``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from sim.errors import InputError
from sim.files import write_atomic
from sim.trace import Op, TensorMeta, Trace
from sim.units import DTYPE_BYTES
from workloads.importers.aten_call import TYPE_NAMES
from workloads.importers.chakra import ET_SCHEMA, ROOT_NAMES, TKSIM_OP_ATTR

__all__ = ["export_chakra"]

_THREAD_ID = 2
_FIRST_OP_ID = 3
#: Fields of a tksim op that travel in ``tksim_op`` (name and tensors are the node's own).
_OWN_FIELDS = ("name", "inputs", "outputs")


def export_chakra(trace: Trace, path: str | Path) -> Path:
    """Write ``trace`` as an execution trace JSON at ``path`` (see the module doc)."""
    tensors = _Tensors()
    nodes = [_node(1, ROOT_NAMES[0], 1, scope=7, tid=0), _node(_THREAD_ID, ROOT_NAMES[1], 1,
                                                               scope=7, tid=1)]
    for index, op in enumerate(trace.ops):
        nodes.append(_op_node(op, index, tensors))
    doc = {"schema": ET_SCHEMA, "pid": 0, "time": "", "start_ts": 0, "finish_ts": 0,
           "tksim_meta": dict(trace.meta), "nodes": nodes}
    return write_atomic(path, json.dumps(doc, separators=(",", ":")))


class _Tensors:
    """Tensor tuples ``[tensor_id, storage_id, offset, numel, itemsize, device]``; one id counter
    for tensors and storages, as the observer numbers them."""

    def __init__(self) -> None:
        self.next_id = 1
        self.outputs: dict[int, list[tuple[list, TensorMeta]]] = {}  # op id -> its outputs

    def new(self, meta: TensorMeta, *, storage: int | None = None) -> list:
        tensor_id = self._take()
        storage_id = self._take() if storage is None else storage
        itemsize = DTYPE_BYTES[meta.dtype]
        return [tensor_id, storage_id, 0, meta.numel, max(1, int(itemsize)), "cpu"]

    def _take(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def _op_node(op: Op, index: int, tensors: _Tensors) -> dict[str, Any]:
    """The node of one op: its tensors wired to its deps' outputs, its fields in ``tksim_op``."""
    where = f"ops[{index}]"
    available = [item for dep in op.deps for item in tensors.outputs.get(dep, [])]
    inputs = []
    for meta in op.inputs:
        match = next((t for t, m in available if m == meta), None)
        if match is not None:
            available = [(t, m) for t, m in available if t is not match]
        inputs.append((match or tensors.new(meta), meta))
    outputs = []
    for j, meta in enumerate(op.outputs):
        if j == 0 and inputs and op.name.endswith("_") and inputs[0][1] == meta:
            outputs.append(inputs[0])  # in place: returns its first argument
        elif op.category == "view" and inputs:
            outputs.append((tensors.new(meta, storage=inputs[0][0][1]), meta))
        else:
            outputs.append((tensors.new(meta), meta))
    tensors.outputs[op.id] = outputs
    fields = {k: v for k, v in op.to_dict().items() if k not in _OWN_FIELDS}
    node = _node(_FIRST_OP_ID + index, op.name, _THREAD_ID, scope=0, tid=1,
                 inputs=_io(inputs, f"{where}.inputs"), outputs=_io(outputs, f"{where}.outputs"))
    node["attrs"].append({"name": TKSIM_OP_ATTR, "type": "string",
                          "value": json.dumps(fields, separators=(",", ":"), sort_keys=True)})
    if op.measured_s is not None:
        node["inclusive_dur"] = node["exclusive_dur"] = op.measured_s * 1e6  # us
    return node


def _io(items: list[tuple[list, TensorMeta]], where: str) -> dict[str, list]:
    types = []
    for j, (_, meta) in enumerate(items):
        if meta.dtype not in TYPE_NAMES:
            raise InputError(f"dtype {meta.dtype} has no execution-trace element type",
                             field=f"{where}[{j}].dtype")
        types.append(f"Tensor({TYPE_NAMES[meta.dtype]})")
    return {"values": [t for t, _ in items], "shapes": [list(m.shape) for _, m in items],
            "types": types, "strides": [_contiguous(m.shape) for _, m in items]}


def _contiguous(shape: tuple[int, ...]) -> list[int]:
    return [math.prod(shape[i + 1:]) for i in range(len(shape))]


def _node(node_id: int, name: str, parent: int, *, scope: int, tid: int,
          inputs: dict | None = None, outputs: dict | None = None) -> dict[str, Any]:
    empty = {"values": [], "shapes": [], "types": [], "strides": []}
    attrs = [("rf_id", "uint64", node_id if parent == _THREAD_ID else 0),
             ("fw_parent", "uint64", 0), ("seq_id", "int64", -1), ("scope", "uint64", scope),
             ("tid", "uint64", tid), ("fw_tid", "uint64", 0), ("op_schema", "string", ""),
             ("kernel_backend", "string", ""), ("kernel_file", "string", "")]
    return {"id": node_id, "name": name, "ctrl_deps": parent, "inputs": inputs or empty,
            "outputs": outputs or dict(empty),
            "attrs": [{"name": n, "type": t, "value": v} for n, t, v in attrs]}
