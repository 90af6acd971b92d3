"""Import a torch.profiler trace (Kineto's Chrome trace JSON) as a tksim trace.

Input: the file ``torch.profiler.profile(record_shapes=True, ...).export_chrome_trace(path)``
writes (``.json`` or ``.json.gz``), from any machine: a list of ``traceEvents``. Complete events
(``"ph": "X"``, ``ts`` / ``dur`` in microseconds) of category ``cpu_op`` are framework calls with
``args`` "Input Dims", "Input type", "Input Strides", "Concrete Inputs" (scalars), "Sequence
number"; ``user_annotation`` are ``record_function`` ranges; ``python_function`` are Python frames
(``nn.Module: Linear_0`` with ``with_stack=True``); ``cuda_runtime`` / ``cuda_driver`` are launches
whose ``args.correlation`` names the ``kernel`` / ``gpu_memcpy`` / ``gpu_memset`` events they
started on the device (``args.stream``).

What is measured and what is inferred:

- nesting: events of one thread nest by time (a child starts inside its parent); which calls
  become ops is :mod:`workloads.importers.call_tree` (the level a capture records);
- ``measured_s``: on a trace with device events, the sum of the durations of the kernels launched
  below the op (a kernel's launch is found by correlation, its op by time nesting on the launching
  thread), 0 for an op that launched none; on a CPU trace, the op's CPU duration (its nested calls
  included). ``meta["timing_scope"]`` says which (``gpu_kernels`` / ``cpu_op``);
- ``num_kernels``: the kernels counted (CPU trace: 1, as capture); ``stream``: its first kernel's
  stream (a kernel-less op: its thread's last stream; CPU trace: 0); ``rank``: ``distributedInfo``;
- category, FLOPs, bytes, attrs, output shapes: rebuilt from the recorded shapes
  (:mod:`workloads.importers.aten_call`); a profiler records no outputs and no element type of a
  tensor list (taken from the op's other tensors);
- ``deps``: a profiler records no tensor identity, so each op depends on the previous op on its
  stream (GPU trace: CUDA runs a stream in order, so this is exact for the device; cross-stream
  waits on events are not recovered) or on its thread (CPU trace: conservative, a serial chain).

Lifecycle: :func:`import_torch_profiler` reads, validates, builds per-thread call trees, attaches
kernels, selects ops and prices them; :func:`measured_calls` exposes the per-call measurements for
matching an execution trace from the same run (by record function id).
"""

from __future__ import annotations

import ast
import gzip
import json
import zlib
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sim.errors import InputError
from sim.trace import Op, Trace
from workloads.importers.aten_call import (
    NONE,
    SCALAR,
    TENSOR,
    TENSORS,
    UNKNOWN,
    CallPricer,
    RecordedArg,
    freeze,
    torch_dtype,
)
from workloads.importers.call_tree import (
    ANNOTATION,
    FRAME,
    OP,
    RUNTIME,
    CallNode,
    Selected,
    mark_subtrees,
    select_calls,
)

__all__ = ["import_torch_profiler", "measured_calls", "load_json"]

_KINDS = {"cpu_op": OP, "user_annotation": ANNOTATION, "python_function": FRAME,
          "cuda_runtime": RUNTIME, "cuda_driver": RUNTIME}
_DEVICE_CATS = frozenset({"kernel", "gpu_memcpy", "gpu_memset"})
_NS_PER_US = 1000


def import_torch_profiler(path: str | Path) -> Trace:
    """Read a Kineto Chrome trace and return it as a :class:`~sim.trace.Trace` (see module doc)."""
    source = str(path)
    doc = load_json(path)
    events = _trace_events(doc, source)
    roots, device = _call_trees(events)
    gpu = bool(device)
    pricer = CallPricer()
    chosen = sorted(select_calls(roots, pricer), key=lambda s: s.node.order)
    distributed = _distributed(doc)
    rank = distributed.get("rank", 0)
    ops = _ops(chosen, pricer, gpu=gpu, rank=rank if isinstance(rank, int) else 0,
               world_size=distributed.get("world_size"))
    sum_measured_s = sum(op.measured_s or 0.0 for op in ops)
    meta = {
        "source": "torch.profiler", "source_file": Path(path).name,
        "timing_scope": "gpu_kernels" if gpu else "cpu_op", "num_events": len(events),
        "num_device_events": len(device), "sum_measured_s": sum_measured_s,
        # device work no recorded op launched (launched from Python, or its launch not in the trace)
        "unattributed_kernels": len(device) - sum(op.num_kernels for op in ops) if gpu else 0,
        "unattributed_kernel_s": max(0.0, sum(e["dur"] for e in device) * 1e-6 - sum_measured_s),
        "devices": [d.get("name") for d in doc.get("deviceProperties") or []
                    if isinstance(d, Mapping)],
        "host_name": doc.get("host_name", ""),
    }
    return Trace(ops=tuple(ops), meta=meta)


def measured_calls(path: str | Path) -> dict[int, tuple[float, int, int]]:
    """Record function id -> (measured_s, num_kernels, stream) of every ``cpu_op`` of a trace,
    measured as :func:`import_torch_profiler` measures ops (kernel time, else CPU time)."""
    source = str(path)
    roots, device = _call_trees(_trace_events(load_json(path), source))
    gpu = bool(device)
    out: dict[int, tuple[float, int, int]] = {}
    stack = list(roots)
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        record_id = node.source.get("args", {}).get("Record function id")
        if node.kind == OP and isinstance(record_id, int):
            kernels = _kernels_below(node)
            out[record_id] = _measure(node, kernels, gpu, default_stream=0)
    return out


def load_json(path: str | Path) -> Any:
    """A JSON file (gzip detected by its magic bytes), errors as :class:`InputError`."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        return json.loads(raw)
    except FileNotFoundError:
        raise InputError("no such file", source=source) from None
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"corrupt or unreadable file: {exc}", source=source) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"malformed JSON: {exc}", source=source) from None


# --- events -> call trees ------------------------------------------------------------------------

def _trace_events(doc: Any, source: str) -> list[dict]:
    """The trace's events, after the checks that make the rest safe."""
    events = doc.get("traceEvents") if isinstance(doc, Mapping) else None
    if not isinstance(events, list):
        raise InputError("not a Chrome trace: expected an object with a 'traceEvents' list",
                         source=source, field="traceEvents")
    cpu_ops = [i for i, e in enumerate(events) if isinstance(e, Mapping)
               and e.get("cat") == "cpu_op" and e.get("ph") == "X"]
    if not cpu_ops:
        raise InputError("no 'cpu_op' events: profile with activities including "
                         "ProfilerActivity.CPU", source=source, field="traceEvents")
    if not any("Input Dims" in (events[i].get("args") or {}) for i in cpu_ops):
        raise InputError("cpu_op events have no 'Input Dims': record with "
                         "torch.profiler.profile(record_shapes=True)", source=source,
                         field=f"traceEvents[{cpu_ops[0]}].args")
    for i, event in enumerate(events):
        if isinstance(event, Mapping) and event.get("ph") == "X" and (
                event.get("cat") in _KINDS or event.get("cat") in _DEVICE_CATS):
            _check_event(event, source, i)
    return events


def _check_event(event: Mapping, source: str, index: int) -> None:
    for key in ("ts", "dur"):
        value = event.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool) or (
                key == "dur" and value < 0):
            raise InputError(f"expected a number (>= 0 for dur), got {value!r}", source=source,
                             field=f"traceEvents[{index}].{key}")
    if not isinstance(event.get("name"), str) or not isinstance(event.get("args", {}), Mapping):
        raise InputError("expected a string 'name' and an object 'args'", source=source,
                         field=f"traceEvents[{index}]")


def _call_trees(events: list[dict]) -> tuple[list[CallNode], list[Mapping]]:
    """Per-thread call trees (roots in start order), kernels attached to the calls that launched
    them, and the trace's device events."""
    threads: dict[Any, list[CallNode]] = defaultdict(list)
    device, launches = [], {}
    for i, event in enumerate(events):
        if not isinstance(event, Mapping) or event.get("ph") != "X":
            continue
        cat = event.get("cat")
        if cat in _DEVICE_CATS:
            device.append(event)
        elif cat in _KINDS:
            node = _node(event, _KINDS[cat], i)
            threads[node.thread].append(node)
            if node.kind == RUNTIME and "correlation" in event["args"]:
                launches[event["args"]["correlation"]] = node
    roots = [root for nodes in threads.values() for root in _nest(nodes)]
    _attach_kernels(device, launches)
    for nodes in threads.values():
        mark_subtrees(nodes)
    roots.sort(key=lambda n: n.order)
    return roots, device


def _node(event: Mapping, kind: str, index: int) -> CallNode:
    args = event.get("args") or {}
    seq = args.get("Sequence number")
    return CallNode(name=event["name"], kind=kind, order=round(event["ts"] * _NS_PER_US),
                    args=_recorded_args(args) if kind == OP else None,
                    seq=seq if isinstance(seq, int) else None,
                    thread=(event.get("pid"), event.get("tid")), source=event)


def _nest(nodes: list[CallNode]) -> list[CallNode]:
    """Nest one thread's events by time (a child starts before its parent ends); the roots.
    Sorts ``nodes`` so that each parent precedes its children."""
    nodes.sort(key=lambda n: (n.order, -n.source["dur"]))
    roots: list[CallNode] = []
    stack: list[tuple[CallNode, int]] = []  # (node, end in ns)
    for node in nodes:
        while stack and node.order >= stack[-1][1]:
            stack.pop()
        if stack:
            stack[-1][0].adopt(node)
        else:
            roots.append(node)
        stack.append((node, node.order + round(node.source["dur"] * _NS_PER_US)))
    return roots


def _attach_kernels(device: list[Mapping], launches: Mapping[Any, CallNode]) -> None:
    """Give each device event to the call its launch is nested in (if any)."""
    for event in device:
        args = event.get("args") or {}
        launch = launches.get(args.get("correlation"))
        if launch is not None and launch.parent is not None:
            stream = args.get("stream", event.get("tid", 0))
            launch.parent.kernels.append((event["dur"] * 1e-6,
                                          stream if isinstance(stream, int) else 0))


# --- recorded arguments --------------------------------------------------------------------------

def _recorded_args(args: Mapping) -> tuple[RecordedArg, ...] | None:
    """The call's arguments from Kineto's parallel lists, None when shapes were not recorded."""
    dims, types = args.get("Input Dims"), args.get("Input type")
    if not isinstance(dims, list) or not isinstance(types, list) or len(dims) != len(types):
        return None
    strides = _parallel(args.get("Input Strides"), len(dims), None)
    concrete = _parallel(args.get("Concrete Inputs"), len(dims), "")
    list_dtype = next((t for t in types if torch_dtype(t) is not None), "float")
    return tuple(_argument(d, t, s, c, list_dtype)
                 for d, t, s, c in zip(dims, types, strides, concrete, strict=True))


def _parallel(values: Any, length: int, missing: Any) -> list:
    """An optional list parallel to "Input Dims" (absent in older profilers)."""
    return values if isinstance(values, list) and len(values) == length else [missing] * length


def _argument(dims: Any, type_name: Any, strides: Any, concrete: Any, list_dtype: str
              ) -> RecordedArg:
    if not isinstance(type_name, str):
        return RecordedArg(UNKNOWN)
    if type_name == "TensorList" and _is_shape_list(dims):
        shapes = tuple(tuple(d) for d in dims)
        item_strides = tuple(tuple(s) for s in strides) if _is_shape_list(strides) and len(
            strides) == len(dims) else None
        return RecordedArg(TENSORS, list_dtype, shapes, item_strides)
    if type_name in ("Scalar", "ScalarList"):
        return RecordedArg(SCALAR, value=_scalar(concrete))
    if type_name == "":
        return RecordedArg(NONE)
    if (type_name[0].islower() or type_name.startswith("c10::")) and _is_shape(dims):
        return RecordedArg(TENSOR, type_name, tuple(dims),
                           tuple(strides) if _is_shape(strides) else None)
    return RecordedArg(UNKNOWN)


def _is_shape(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(d, int) and d >= 0 for d in value)


def _is_shape_list(value: Any) -> bool:
    return isinstance(value, list) and all(_is_shape(v) for v in value)


def _scalar(text: Any) -> Any:
    """A "Concrete Inputs" string as a value: bool, int, float, tuple, string; None if empty."""
    if not isinstance(text, str) or text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return freeze(value) if isinstance(value, int | float | list | tuple) else text


# --- calls -> ops --------------------------------------------------------------------------------

def _ops(chosen: Sequence[Selected], pricer: CallPricer, *, gpu: bool, rank: int,
         world_size: Any) -> list[Op]:
    """One op per selected call, ids in program order; deps chain per stream (GPU) / thread."""
    ops: list[Op] = []
    last_in_lane: dict[Any, int] = {}
    thread_stream: dict[Any, int] = {}
    default_stream = _common_stream(chosen) if gpu else 0
    for i, selected in enumerate(chosen):
        node = selected.node
        measured_s, num_kernels, stream = _measure(
            node, _kernels_below(node), gpu, thread_stream.get(node.thread, default_stream))
        thread_stream[node.thread] = stream
        lane = stream if gpu else node.thread
        previous = last_in_lane.get(lane)
        last_in_lane[lane] = i
        priced = pricer.price(node.name, node.args or ())
        attrs = dict(priced.attrs)
        if priced.category == "collective" and isinstance(world_size, int):
            attrs["num_ranks"] = world_size
            if attrs.get("kind") == "allgather":
                attrs["bytes"] = attrs["bytes"] * world_size
        ops.append(Op(
            id=i, name=node.name, category=priced.category, flops=priced.flops,
            bytes_read=priced.bytes_read, bytes_written=priced.bytes_written,
            deps=() if previous is None else (previous,), inputs=priced.inputs,
            outputs=priced.outputs, dtype=priced.dtype, stream=stream, rank=rank,
            module=selected.module, phase=selected.phase, num_kernels=num_kernels,
            sync=priced.sync, measured_s=measured_s, attrs=attrs))
    return ops


def _kernels_below(node: CallNode) -> list[tuple[float, int]]:
    """Device work launched by ``node`` or any call nested in it."""
    kernels, stack = [], [node]
    while stack:
        current = stack.pop()
        kernels.extend(current.kernels)
        if current.kernels_below:
            stack.extend(current.children)
    return kernels


def _measure(node: CallNode, kernels: list[tuple[float, int]], gpu: bool, default_stream: int
             ) -> tuple[float, int, int]:
    """(measured_s, num_kernels, stream) of a call: its kernels on a GPU trace, else CPU time."""
    if not gpu:
        return node.source["dur"] * 1e-6, 1, 0
    stream = kernels[0][1] if kernels else default_stream
    return sum(duration_s for duration_s, _ in kernels), len(kernels), stream


def _common_stream(chosen: Sequence[Selected]) -> int:
    streams = Counter(s for selected in chosen for _, s in _kernels_below(selected.node))
    return streams.most_common(1)[0][0] if streams else 0


def _distributed(doc: Mapping) -> Mapping:
    info = doc.get("distributedInfo")
    return info if isinstance(info, Mapping) else {}
