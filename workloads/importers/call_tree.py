"""Which recorded calls become trace ops, in which phase and module (shared by the importers).

Profilers and execution traces record calls nested: a user annotation holds a module's calls, an
autograd node holds the ops of its backward, ``aten::linear`` holds ``aten::t`` and ``aten::addmm``,
and ``aten::addmm`` holds helpers of its own (``aten::resolve_conj``). A tksim trace lists one
level, the level a capture records: the first aten ops below autograd. So :func:`select_calls`
walks each tree from its roots and

- descends through annotations, Python frames and autograd nodes;
- descends through an op that is CompositeImplicitAutograd (``linear``, ``matmul``,
  ``layer_norm``, ``scaled_dot_product_attention``, ``softmax``, ``reshape``, ``to``, ...), i.e.
  one that below autograd runs as the ops nested in it, when those were recorded;
- records any other op whole: ``addmm``, ``bmm``, ``_scaled_dot_product_flash_attention``,
  ``native_layer_norm``, ``add``, ``copy_``, ... (their nested calls are their implementation);
- skips a CompositeImplicitAutograd op with no op nested in it (``dropout`` in eval mode, a no-op
  ``to``): below autograd it ran as nothing;
- records a call that is not a known op only when device kernels were launched below it and no op
  was (e.g. a custom op this torch does not have), so no device time is dropped; else skips it.

Phase: ``backward`` below an autograd node (``autograd::engine::evaluate_function: ...``,
``*Backward0``, ``AccumulateGrad``), ``optimizer`` below an ``Optimizer.*`` annotation, else
``forward``. Module: the ``.``-joined names of the enclosing user annotations and ``nn.Module:``
labels (``Linear_0``: class and index, as the profiler names modules; ``ProfilerStep#N`` left out).
An autograd node takes the module of the forward op with the same autograd sequence number.

Lifecycle: an importer builds :class:`CallNode` trees (children in call order), calls
:func:`mark_subtrees` once, then :func:`select_calls`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from workloads.importers.aten_call import CallPricer, RecordedArg, is_decomposed, resolve_op

__all__ = ["CallNode", "Selected", "mark_subtrees", "select_calls", "is_backward_node", "OP",
           "ANNOTATION", "FRAME", "RUNTIME"]

# Kinds of node.
OP, ANNOTATION, FRAME, RUNTIME = "op", "annotation", "frame", "runtime"
_BACKWARD = re.compile(r"^autograd::engine::evaluate_function|Backward\d*$|AccumulateGrad$")
_MODULE_PREFIX = "nn.Module: "


@dataclass(eq=False, slots=True)
class CallNode:
    """One recorded call, annotation or Python frame, with what was nested in it.

    ``args`` is None when the trace recorded no arguments; ``seq`` the autograd sequence number;
    ``kernels`` the device work launched directly below it, ``(duration_s, stream)`` each;
    ``order`` its position in program order (start time or record id).
    """

    name: str
    kind: str
    order: float
    args: tuple[RecordedArg, ...] | None = None
    overload: str | None = None
    outputs: tuple[RecordedArg, ...] = ()
    seq: int | None = None
    thread: Any = 0
    source: Any = None
    parent: CallNode | None = None
    children: list[CallNode] = field(default_factory=list)
    kernels: list[tuple[float, int]] = field(default_factory=list)
    ops_below: bool = False
    kernels_below: bool = False

    def adopt(self, child: CallNode) -> None:
        child.parent = self
        self.children.append(child)


@dataclass(frozen=True, slots=True)
class Selected:
    """A call that becomes one trace op, with its phase and module."""

    node: CallNode
    phase: str
    module: str


def mark_subtrees(nodes: Iterable[CallNode]) -> None:
    """Set ``ops_below`` / ``kernels_below``; ``nodes`` lists every parent before its children."""
    for node in reversed(list(nodes)):
        parent = node.parent
        if parent is not None:
            parent.ops_below |= node.ops_below or (node.kind == OP and _known(node.name))
            parent.kernels_below |= node.kernels_below or bool(node.kernels)


def select_calls(roots: Sequence[CallNode], pricer: CallPricer) -> list[Selected]:
    """The calls to record, in the order visited (each tree depth first, roots in order)."""
    chosen: list[Selected] = []
    forward_modules: dict[int, str] = {}  # autograd sequence number -> module of its forward op
    stack = [(root, "forward", "") for root in reversed(roots)]
    while stack:
        node, phase, module = stack.pop()
        if node.kind == RUNTIME:
            continue
        phase, module = _context(node, phase, module, forward_modules)
        verdict = _verdict(node, pricer) if node.kind == OP else _DESCEND
        if verdict is _RECORD:
            chosen.append(Selected(node, phase, module))
        elif verdict is _DESCEND:
            stack.extend((child, phase, module) for child in reversed(node.children))
    return chosen


_RECORD, _DESCEND, _SKIP = "record", "descend", "skip"


def _verdict(node: CallNode, pricer: CallPricer) -> str:
    """Record, descend into or skip op ``node`` (see the module doc)."""
    packet = resolve_op(node.name)
    if packet is not None:
        func = pricer.overload(node.name, node.args, node.overload) if node.args else None
        decomposed = is_decomposed(func) if func is not None else _all_decomposed(packet)
        if not decomposed:
            return _RECORD
    if node.ops_below:
        return _DESCEND
    # a composite that ran as nothing (dropout in eval, a no-op .to()), an autograd node or an
    # unknown op with no op below: recorded only if device work was launched in it
    return _RECORD if node.kernels or node.kernels_below else _SKIP


def is_backward_node(name: str) -> bool:
    """An autograd node: its nested calls are backward ops."""
    return _BACKWARD.search(name) is not None


def _context(node: CallNode, phase: str, module: str,
             forward_modules: dict[int, str]) -> tuple[str, str]:
    """Phase and module inside ``node``."""
    name = node.name
    if node.kind == FRAME:
        return (phase, _join(module, name[len(_MODULE_PREFIX):])) if name.startswith(
            _MODULE_PREFIX) else (phase, module)
    if node.kind == ANNOTATION:
        if name.startswith("Optimizer."):
            return "optimizer", module
        if name.startswith("ProfilerStep#"):
            return phase, module
        return phase, _join(module, name.removeprefix(_MODULE_PREFIX))
    if is_backward_node(name):
        return "backward", forward_modules.get(_autograd_seq(node), "")
    if node.seq is not None and phase == "forward":
        forward_modules.setdefault(node.seq, module)
    return phase, module


def _autograd_seq(node: CallNode) -> int | None:
    """The sequence number of an autograd node, or of the node it evaluates (an execution trace
    numbers ``AddmmBackward0`` but not ``evaluate_function: AddmmBackward0`` around it)."""
    if node.seq is not None:
        return node.seq
    return next((c.seq for c in node.children if c.seq is not None and is_backward_node(c.name)),
                None)


@cache
def _all_decomposed(packet) -> bool:
    """Whether every overload of ``packet`` is CompositeImplicitAutograd."""
    for name in packet.overloads():
        try:
            if not is_decomposed(getattr(packet, name)):
                return False
        except (AttributeError, RuntimeError):  # TorchScript-only overloads (aten::to.prim_*)
            continue
    return True


def _known(name: str) -> bool:
    return resolve_op(name) is not None


def _join(module: str, label: str) -> str:
    return f"{module}.{label}" if module else label
