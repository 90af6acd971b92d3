"""One rank's shard of an op: a smaller dimension of some tensors, fewer FLOP and bytes.

An op is shrunk by naming, for each input and output tensor, the dimension that is split and its
new size. FLOP scale by the op's ``factor`` (the shard's share of the work); bytes read (written)
are recomputed from the new shapes when the op's bytes were exactly its tensors' sizes (GEMMs,
element-wise ops: a column-parallel GEMM still reads the whole activation), else scaled by
``factor``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from sim.trace import Op, TensorMeta

__all__ = ["Split", "shard_op", "shard_gemm", "shard_attention", "pick_dim"]

#: A tensor's split: (dimension, new size), or None for a tensor kept whole.
Split = tuple[int, int] | None


def _resize(meta: TensorMeta, split: Split) -> TensorMeta:
    if split is None:
        return meta
    dim, size = split
    shape = list(meta.shape)
    shape[dim] = size
    return TensorMeta(shape=tuple(shape), dtype=meta.dtype)


def _bytes(old_total: float, old: Sequence[TensorMeta], new: Sequence[TensorMeta],
           factor: float) -> float:
    if old and abs(old_total - sum(t.nbytes for t in old)) < 0.5:
        return float(sum(t.nbytes for t in new))
    return old_total * factor


def shard_op(op: Op, *, factor: float, inputs: Sequence[Split] = (), outputs: Sequence[Split] = (),
             attrs: Mapping[str, Any] | None = None) -> Op:
    """``op`` with the given tensor splits (missing entries: kept whole) and FLOP x ``factor``."""
    new_in = tuple(_resize(t, s) for t, s in zip(op.inputs, _pad(inputs, op.inputs), strict=True))
    new_out = tuple(_resize(t, s) for t, s in zip(op.outputs, _pad(outputs, op.outputs),
                                                  strict=True))
    return dataclasses.replace(
        op, inputs=new_in, outputs=new_out, flops=op.flops * factor,
        bytes_read=_bytes(op.bytes_read, op.inputs, new_in, factor),
        bytes_written=_bytes(op.bytes_written, op.outputs, new_out, factor),
        attrs=dict(attrs) if attrs is not None else op.attrs,
    )


def _pad(splits: Sequence[Split], tensors: Sequence[TensorMeta]) -> list[Split]:
    return [*splits, *[None] * (len(tensors) - len(splits))][: len(tensors)]


def pick_dim(meta: TensorMeta, sizes: Mapping[int, int]) -> Split:
    """The last dimension if its size is a key of ``sizes`` (full -> shard size), else None."""
    if meta.shape and meta.shape[-1] in sizes:
        return len(meta.shape) - 1, sizes[meta.shape[-1]]
    return None


def shard_gemm(op: Op, axis: str, size: int) -> Op:
    """A GEMM (``attrs`` b, m, n, k) with ``axis`` cut to ``size``.

    Operands are the last two inputs of rank >= 2, A (..., m, k) and B (..., k, n), the output
    C (..., m, n); a 1-D input is a bias (n,). Operands laid out otherwise keep their shapes and
    only FLOP and bytes scale.
    """
    full = int(op.attrs[axis])
    factor = size / full
    attrs = {**op.attrs, axis: size}
    operands = [i for i, t in enumerate(op.inputs) if len(t.shape) >= 2][-2:]
    if len(operands) != 2 or not op.outputs:
        return shard_op(op, factor=factor, attrs=attrs)
    a, b = (op.inputs[i] for i in operands)
    c = op.outputs[0]
    m, n, k = (int(op.attrs[x]) for x in ("m", "n", "k"))
    if a.shape[-2:] != (m, k) or b.shape[-2:] != (k, n) or c.shape[-2:] != (m, n):
        return shard_op(op, factor=factor, attrs=attrs)
    ia, ib = operands
    # axis -> (split of A, split of B, split of C), as dimensions counted from the end
    last = {"m": (2, None, 2), "n": (None, 1, 1), "k": (1, 2, None), "b": (3, 3, 3)}[axis]

    def split(meta: TensorMeta, from_end: int | None) -> Split:
        if from_end is None or len(meta.shape) < from_end:
            return None
        return len(meta.shape) - from_end, size

    inputs: list[Split] = []
    for i, x in enumerate(op.inputs):
        if i == ia:
            inputs.append(split(x, last[0]))
        elif i == ib:
            inputs.append(split(x, last[1]))
        elif len(x.shape) == 1 and axis == "n" and x.shape[0] == n:  # bias of a sharded output
            inputs.append((0, size))
        else:
            inputs.append(None)
    outputs: list[Split] = [split(c, last[2])]
    return shard_op(op, factor=factor, inputs=inputs, outputs=outputs, attrs=attrs)


def shard_attention(op: Op, t: int) -> Op:
    """An attention op with ``h_q`` and ``h_kv`` heads divided by ``t`` (the head dimension of
    (b, h, s, d) tensors, or of (b, s, h, d))."""
    h_q, h_kv = int(op.attrs["h_q"]), int(op.attrs["h_kv"])
    heads = {h_q: h_q // t, h_kv: h_kv // t}

    def split(meta: TensorMeta) -> Split:
        for dim in (1, 2):
            if len(meta.shape) > dim + 1 and meta.shape[dim] in heads:
                return dim, heads[meta.shape[dim]]
        return None

    return shard_op(op, factor=1 / t, inputs=[split(x) for x in op.inputs],
                    outputs=[split(x) for x in op.outputs],
                    attrs={**op.attrs, "h_q": h_q // t, "h_kv": h_kv // t})
