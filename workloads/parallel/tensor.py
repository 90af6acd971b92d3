"""Tensor parallelism (Megatron-LM) as a trace transform: one rank's shard of every op.

Legend: t tensor-parallel degree, b batch, s sequence, h hidden, a / a_kv (key/value) heads,
d head size, f MLP size, V vocabulary (V_t = ceil(V / t) rows per rank).

Modeled (Shoeybi et al. 2019, arXiv:1909.08053, sec. 3): in each attention and MLP block the
column-parallel linears keep n/t output features (backward: the attr equal to the full width, in
the order grad-input k, grad-weight m), the row-parallel linear k/t input features (backward: n),
attention h_q/t and h_kv/t heads; every other op of a block whose input is already split (RoPE,
softmax, activation, expert routing of split features) is divided by t, while ops that only see
replicated tensors (the router, partial sums of grad-inputs before their all-reduce) are kept
whole. The LM head is column-parallel over the vocabulary and the loss ops after it divided with
it ("parallel cross entropy"); the token embedding is vocab-parallel (the lookup keeps its size).
Sequence parallelism (Korthikanti et al. 2022, arXiv:2205.05198, sec. 4.2.2) also divides the
layer's ops outside the blocks (norms, residual adds, dropout) and the final norm over the
sequence. The communication is inserted by :mod:`workloads.parallel.tp_comm`.

Simplified: the vocabulary is padded to a multiple of t (Megatron's
``--make-vocab-size-divisible-by``) instead of refused; a tied LM head shares the embedding's
shard.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sim.errors import InputError
from sim.timeline import layer_of
from sim.trace import Op, TensorMeta
from workloads.parallel.roles import COLUMN, ROW, block_of, linear_role
from workloads.parallel.shard import Split, pick_dim, shard_attention, shard_gemm, shard_op
from workloads.parallel.tp_comm import Region, insert_collectives

__all__ = ["TensorParallel", "tensor_parallel"]

# backward GEMM attr holding the sharded width, by role: grad-input first, then grad-weight
_BACKWARD_AXES = {COLUMN: ("k", "m", "n"), ROW: ("n", "k", "m")}
VOCAB = "vocab"  # key of the LM head's region


@dataclass
class _Block:
    """What is split in one block: feature widths (full -> shard) and heads (full -> shard)."""

    factor: float
    sizes: dict[int, int] = field(default_factory=dict)
    heads: dict[int, int] = field(default_factory=dict)
    batch_heads: dict[int, int] = field(default_factory=dict)  # b*a of eager attention's bmm

    def split(self, meta: TensorMeta) -> Split:
        shape = meta.shape
        if len(shape) == 4:
            for dim in (1, 2):
                if shape[dim] in self.heads:
                    return dim, self.heads[shape[dim]]
        found = pick_dim(meta, self.sizes)
        if found is None and len(shape) == 3 and shape[0] in self.batch_heads:
            return 0, self.batch_heads[shape[0]]
        return found


@dataclass
class TensorParallel:
    """The model as tensor parallelism sees it (read from the forward ops) and the transform."""

    t: int
    sequence_parallel: bool
    b: int
    s: int
    h: int
    vocab: int
    embed_id: int
    embed_module: str
    lm_module: str
    roles: dict[str, list[tuple[str, int, int]]]  # module -> (role, full width, shard width)
    blocks: dict[str, _Block]
    final_norms: frozenset[str]
    sharded: dict[int, bool] = field(default_factory=dict)  # op id -> its output is split

    @property
    def vocab_shard(self) -> int:
        return math.ceil(self.vocab / self.t)

    # -- one op ----------------------------------------------------------------------------

    def shard(self, op: Op) -> Op:
        """One rank's version of ``op`` (records whether its output is split)."""
        new, split = self._shard(op)
        self.sharded[op.id] = split
        if self.sequence_parallel and self._sequence_split(op):
            new = self._split_sequence(new)
        return new

    def _shard(self, op: Op) -> tuple[Op, bool]:
        if op.category == "embedding" and op.attrs.get("vocab") == self.vocab:
            table = [(0, self.vocab_shard)] if not op.attrs.get("backward") else []
            grad = [(0, self.vocab_shard)] if op.attrs.get("backward") else []
            return shard_op(op, factor=1.0, inputs=table, outputs=grad), False
        if op.category == "gemm" and op.module in self.roles:
            found = self._gemm_axis(op)
            if found is not None:
                axis, shard_width = found
                return shard_gemm(op, axis, shard_width), axis in ("m", "n")
        block = self._block(op)
        if block is None:
            return op, False
        if op.module in self.roles and op.category == "view" and not op.deps:  # of a weight
            return self._split_widths(op, op.module), False
        if op.category == "attention" and "h_q" in op.attrs:
            return shard_attention(op, self.t), True
        if not any(self.sharded.get(dep) for dep in op.deps):
            return op, False
        b = int(op.attrs.get("b", 1))
        if op.category == "gemm" and b in block.batch_heads:
            return shard_gemm(op, "b", block.batch_heads[b]), True
        if op.module in self.roles:  # views and casts inside a linear: its own widths
            return self._split_widths(op, op.module, factor=block.factor), True
        return shard_op(op, factor=block.factor, inputs=[block.split(x) for x in op.inputs],
                        outputs=[block.split(x) for x in op.outputs]), True

    def _split_widths(self, op: Op, module: str, factor: float = 1.0) -> Op:
        """Split the last, else the first, dimension that has a full width of ``module``."""
        widths = {full: shard for _, full, shard in self.roles[module]}

        def split(meta: TensorMeta) -> Split:
            found = pick_dim(meta, widths)
            if found is not None:
                return found
            dim = next((i for i, size in enumerate(meta.shape) if size in widths), None)
            return None if dim is None else (dim, widths[meta.shape[dim]])

        return shard_op(op, factor=factor, inputs=[split(x) for x in op.inputs],
                        outputs=[split(x) for x in op.outputs])

    def _block(self, op: Op) -> _Block | None:
        found = block_of(op.module)
        if found is not None:
            return self.blocks.get(found[0])
        if op.module == self.lm_module or layer_of(op.module) < 0:
            return self.blocks[VOCAB]  # the loss reads the split logits
        return None

    def _gemm_axis(self, op: Op) -> tuple[str, int] | None:
        candidates = self.roles[op.module]
        if op.phase == "forward":
            role = self._forward_role(op)
            for r, full, shard in candidates:
                axis = "n" if r == COLUMN else "k"
                if r == role and int(op.attrs[axis]) == full:
                    return axis, shard
            return None
        for r, full, shard in candidates:
            for axis in _BACKWARD_AXES[r]:
                if int(op.attrs.get(axis, 0)) == full:
                    return axis, shard
        return None

    def _forward_role(self, op: Op) -> str | None:
        if op.module == self.lm_module:
            return COLUMN
        return linear_role(op.module) or _role_by_width(op, self.h)

    # -- sequence parallelism --------------------------------------------------------------

    def _sequence_split(self, op: Op) -> bool:
        if op.category in ("collective", "send_recv"):
            return False
        if layer_of(op.module) >= 0:
            return block_of(op.module) is None
        return op.module in self.final_norms

    def _split_sequence(self, op: Op) -> Op:
        b, s, t = self.b, self.s, self.t

        def split(meta: TensorMeta) -> Split:
            shape = meta.shape
            if len(shape) >= 3 and shape[0] == b and shape[1] == s:
                return 1, s // t
            if len(shape) >= 1 and shape[0] == b * s:
                return 0, b * s // t
            return None

        return shard_op(op, factor=1 / t, inputs=[split(x) for x in op.inputs],
                        outputs=[split(x) for x in op.outputs])

    # -- the optimizer -----------------------------------------------------------------------

    def shard_step(self, op: Op) -> Op:
        """An optimizer op of a split parameter works on the rank's slice of it."""
        param = str(op.attrs.get("param", ""))
        module = param.rsplit(".", 1)[0]
        if module == self.embed_module:
            widths = {self.vocab: self.vocab_shard}
        elif module in self.roles and not (param.endswith(".bias")
                                           and all(r == ROW for r, _, _ in self.roles[module])):
            widths = {full: shard for _, full, shard in self.roles[module]}
        else:
            return op

        def split(meta: TensorMeta) -> Split:
            for dim, size in enumerate(meta.shape):
                if size in widths:
                    return dim, widths[size]
            return None

        inputs, outputs = [split(x) for x in op.inputs], [split(x) for x in op.outputs]
        found = [sp for sp in (*inputs, *outputs) if sp is not None]
        if not found:
            return op
        factor = min(widths[size] / size for size in widths)
        return shard_op(op, factor=factor, inputs=inputs, outputs=outputs)


def _role_by_width(op: Op, h: int) -> str | None:
    """A linear with no known name (fused MoE experts): reads h -> column, writes h -> row."""
    if int(op.attrs.get("b", 1)) != 1 or block_of(op.module) is None:
        return None
    if block_of(op.module)[0] == op.module:  # the block's own GEMMs: attention scores
        return None
    k, n = int(op.attrs["k"]), int(op.attrs["n"])
    if k == h and n != h:
        return COLUMN
    if n == h and k != h:
        return ROW
    return None


def analyze(forward: Sequence[Op], *, t: int, sequence_parallel: bool) -> TensorParallel:
    """Read the model's split from its forward ops; InputError if ``t`` does not divide it."""
    embeds = [op for op in forward if op.category == "embedding" and "vocab" in op.attrs]
    if not embeds:
        raise InputError("the trace has no token embedding; tensor parallelism needs one",
                         field="--tp")
    embed = max(embeds, key=lambda op: int(op.attrs["vocab"]))
    vocab, h = int(embed.attrs["vocab"]), int(embed.attrs["d"])
    shape = embed.outputs[0].shape if embed.outputs else (1, 1, h)
    b, s = (shape[0], shape[1]) if len(shape) == 3 else (1, shape[0])
    lm_module = next((op.module for op in forward if op.category == "gemm" and op.module
                      and layer_of(op.module) < 0 and int(op.attrs.get("n", 0)) == vocab), "")
    tp = TensorParallel(t=t, sequence_parallel=sequence_parallel, b=b, s=s, h=h, vocab=vocab,
                        embed_id=embed.id, embed_module=embed.module, lm_module=lm_module,
                        roles={}, blocks={}, final_norms=_final_norms(forward, lm_module))
    if lm_module:
        tp.roles[lm_module] = [(COLUMN, vocab, tp.vocab_shard)]
    tp.blocks[VOCAB] = _Block(factor=tp.vocab_shard / vocab, sizes={vocab: tp.vocab_shard})
    for op in forward:
        if op.category == "gemm" and op.module != lm_module:
            _add_linear(tp, op)
    for op in forward:
        found = block_of(op.module)
        if found is not None and found[0] not in tp.blocks:
            tp.blocks[found[0]] = _new_block(tp, found, forward)
    if sequence_parallel and s % t:
        raise InputError(f"{t} does not divide the sequence length {s} (sequence parallelism "
                         "splits the sequence)", field="--tp")
    return tp


def _add_linear(tp: TensorParallel, op: Op) -> None:
    role = tp._forward_role(op)
    if role is None:
        return
    width = int(op.attrs["n"] if role == COLUMN else op.attrs["k"])
    if width % tp.t:
        kind = "output" if role == COLUMN else "input"
        raise InputError(f"{tp.t} does not divide the {width} {kind} features of {op.module}",
                         field="--tp")
    entry = (role, width, width // tp.t)
    if entry not in tp.roles.setdefault(op.module, []):
        tp.roles[op.module].append(entry)


def _new_block(tp: TensorParallel, found: tuple[str, str], forward: Sequence[Op]) -> _Block:
    key, kind = found
    t = tp.t
    block = _Block(factor=1 / t)
    for module, entries in tp.roles.items():
        if block_of(module) == found:
            block.sizes.update({full: shard for _, full, shard in entries})
    if kind != "attention":
        return block
    ops = [op for op in forward if (block_of(op.module) or ("",))[0] == key]
    attn = next((op for op in ops if op.category == "attention" and "h_q" in op.attrs), None)
    if attn is not None:
        a, a_kv, d = int(attn.attrs["h_q"]), int(attn.attrs["h_kv"]), int(attn.attrs["d"])
    else:  # eager attention: the (b, s, a, d) view of q
        view = next((op for op in ops if op.outputs and len(op.outputs[0].shape) == 4), None)
        if view is None:
            return block
        a = a_kv = view.outputs[0].shape[2]
        d = view.outputs[0].shape[3]
    if a % t:
        raise InputError(f"{t} does not divide the {a} attention heads of {key}", field="--tp")
    if a_kv % t:
        raise InputError(f"{t} does not divide the {a_kv} key/value heads of {key}",
                         field="--tp")
    block.heads.update({a: a // t, a_kv: a_kv // t})
    block.sizes.update({a * d: a * d // t, a_kv * d: a_kv * d // t})
    block.batch_heads.update({tp.b * a: tp.b * a // t, tp.b * a_kv: tp.b * a_kv // t})
    return block


def _final_norms(forward: Sequence[Op], lm_module: str) -> frozenset[str]:
    """Modules between the last layer and the LM head (the final norm)."""
    last = max((i for i, op in enumerate(forward) if layer_of(op.module) >= 0), default=-1)
    names: set[str] = set()
    for op in forward[last + 1:]:
        if op.module == lm_module:
            break
        if op.module:
            names.add(op.module)
    return frozenset(names)


def tensor_parallel(forward: Sequence[Op], backward: Sequence[Op], step: Sequence[Op], *,
                    t: int, sequence_parallel: bool, next_id: Callable[[], int],
                    ) -> tuple[list[Op], list[Op], list[Op]]:
    """One tensor-parallel rank's forward, backward and optimizer ops, with the tensor-parallel
    collectives in line (see the module doc)."""
    if t == 1:
        return list(forward), list(backward), list(step)
    tp = analyze(forward, t=t, sequence_parallel=sequence_parallel)
    new_forward = [tp.shard(op) for op in forward]
    new_backward = [tp.shard(op) for op in backward]
    regions = Region(embed_id=tp.embed_id, lm_module=tp.lm_module, tokens=tp.b * tp.s,
                     sequence_parallel=sequence_parallel, train=bool(backward), t=t)
    new_forward = insert_collectives(new_forward, regions, "forward", tp.sharded, next_id)
    new_backward = insert_collectives(new_backward, regions, "backward", tp.sharded, next_id)
    return new_forward, new_backward, [tp.shard_step(op) for op in step]
