"""Full activation recomputation: a layer keeps only its input; its forward runs again in backward.

Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost" (arXiv:1604.06174), sec. 3;
Megatron-LM ``--recompute-granularity full --recompute-method uniform`` with one layer per chunk.

A layer is the module subtree of one numbered block (``model.layers.3``, ``transformer.h.3``): the
shortest prefix of a module path that ends in an integer component. For each layer of the stage
the backward gets a copy of the layer's forward ops (new ids, phase ``backward``, ``attrs
["recompute"] = True``, the same FLOPs and bytes) right before the layer's first backward op; the
copies read the layer's kept input (deps on forward ops outside the layer stay), and the layer's
backward ops read the recomputed tensors instead of the saved ones.

Activation memory per micro-batch in flight becomes: the tensors kept for backward, i.e. each
layer's input (the output of the op the layer's first op reads, e.g. the previous layer's residual
add, b s h elements) and the saved tensors of ops outside the layers (embedding, final norm,
logits: Megatron does not recompute those either), plus the saved tensors of one layer, the
largest, while it is recomputed. A saved tensor is the output (``bytes_written``) of a forward op
that some backward op depends on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from sim.cluster.workload import StageProgram
from sim.trace import Op

__all__ = ["apply_recompute", "layer_of", "activation_bytes"]

_LAYER = re.compile(r"^((?:[^.]+\.)*?\d+)(?:\.|$)")
#: Ops not re-run: the stage's boundary send / recv (the recv's output is the kept input).
_NOT_RECOMPUTED = frozenset({"send_recv"})


def layer_of(path: str) -> str | None:
    """``model.layers.3.mlp.up_proj`` -> ``model.layers.3``; None outside the numbered blocks."""
    match = _LAYER.match(path)
    return match[1] if match else None


def apply_recompute(program: StageProgram, next_id: Callable[[], int]) -> StageProgram:
    """``program`` with every layer's forward recomputed before its backward (module doc)."""
    layers = _layer_ops(program.forward)
    copies: dict[str, dict[int, Op]] = {}  # layer -> forward id -> its copy
    backward: list[Op] = []
    for op in program.backward:
        layer = layer_of(op.module)
        if layer in layers and layer not in copies:
            copies[layer] = _recompute(layers[layer], next_id)
            backward += copies[layer].values()
        if layer in copies:
            op = replace(op, deps=tuple(_mapped(op.deps, copies[layer])))
        backward.append(op)
    memory = dict(program.memory_bytes)
    memory["activations"] = activation_bytes(program.forward, program.backward)
    return replace(program, backward=tuple(backward), memory_bytes=memory)


def activation_bytes(forward: Sequence[Op], backward: Sequence[Op]) -> float:
    """Bytes kept per micro-batch under full recomputation: the layers' inputs and the saved
    tensors outside the layers, plus the largest layer's saved tensors (module doc)."""
    producer = {op.id: op for op in forward}
    saved = {d for op in backward for d in op.deps if d in producer}
    layers = _layer_ops(forward)
    kept = {d for d in saved if layer_of(producer[d].module) is None}
    kept |= {_input_of(ops, producer) for ops in layers.values()} - {None}
    largest = max((sum(_output_bytes(producer[i]) for i in saved if i in {o.id for o in ops})
                   for ops in layers.values()), default=0.0)
    return sum(_output_bytes(producer[i]) for i in kept) + largest


def _layer_ops(forward: Iterable[Op]) -> dict[str, list[Op]]:
    layers: dict[str, list[Op]] = {}
    for op in forward:
        layer = layer_of(op.module)
        if layer is not None and op.category not in _NOT_RECOMPUTED:
            layers.setdefault(layer, []).append(op)
    return layers


def _recompute(ops: Sequence[Op], next_id: Callable[[], int]) -> dict[int, Op]:
    copies: dict[int, Op] = {}
    for op in ops:
        copies[op.id] = replace(op, id=next_id(), phase="backward",
                                deps=tuple(_mapped(op.deps, copies)),
                                attrs={**op.attrs, "recompute": True})
    return copies


def _mapped(deps: Iterable[int], copies: dict[int, Op]) -> list[int]:
    return list(dict.fromkeys(copies[d].id if d in copies else d for d in deps))


def _input_of(ops: Sequence[Op], producer: dict[int, Op]) -> int | None:
    """The id of the op whose output is the layer's input: the largest output outside the layer
    that the layer's forward reads (the hidden states, not e.g. rotary tables)."""
    inside = {op.id for op in ops}
    outside = {d for op in ops for d in op.deps if d not in inside and d in producer}
    return max(outside, key=lambda d: _output_bytes(producer[d]), default=None)


def _output_bytes(op: Op) -> float:
    """Bytes an op's output holds: ``bytes_written``, or a received message's ``bytes``."""
    return op.bytes_written or float(op.attrs.get("bytes", 0.0))
