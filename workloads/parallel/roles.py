"""Megatron-LM roles of a model's modules, read from HF module paths.

A transformer layer has two tensor-parallel *blocks* (Shoeybi et al. 2019, arXiv:1909.08053,
sec. 3): the attention block and the MLP block. Inside a block, the first linears are
*column-parallel* (each rank holds a slice of the output features: q/k/v, gate/up) and the last is
*row-parallel* (a slice of the input features: o_proj, down_proj), so that a block needs one
all-reduce forward and one backward. Names follow the HF implementations of Llama / Mistral /
Mixtral, GPT-2 (``Conv1D`` linears) and BERT.
"""

from __future__ import annotations

import re

__all__ = ["COLUMN", "ROW", "block_of", "linear_role"]

COLUMN = "column"
ROW = "row"

# model.layers.3.<rest> (Llama), transformer.h.3.<rest> (GPT-2), bert.encoder.layer.3.<rest>
_IN_LAYER = re.compile(r"^(?P<layer>(?:.*?\.)?(?:layers|h|layer|blocks)\.\d+)\.(?P<rest>.+)$")

# (path inside the layer, block kind, block name): BERT splits each block over two sub-trees
# (attention.self + attention.output.dense; intermediate + output.dense).
_BLOCKS = (
    ("self_attn", "attention", "self_attn"),
    ("self_attention", "attention", "self_attention"),
    ("attn", "attention", "attn"),
    ("attention.self", "attention", "attention"),
    ("attention.output.dense", "attention", "attention"),
    ("mlp", "mlp", "mlp"),
    ("block_sparse_moe", "mlp", "block_sparse_moe"),
    ("feed_forward", "mlp", "feed_forward"),
    ("intermediate", "mlp", "intermediate"),
    ("output.dense", "mlp", "intermediate"),
)

_COLUMN_NAMES = frozenset({
    "q_proj", "k_proj", "v_proj", "qkv_proj", "gate_proj", "up_proj", "gate_up_proj",  # Llama
    "w1", "w3",  # Mixtral experts (older HF layout)
    "c_attn", "c_fc",  # GPT-2 (Conv1D: weight [in, out])
    "query", "key", "value", "query_key_value", "dense_h_to_4h", "fc1",
})
_ROW_NAMES = frozenset({
    "o_proj", "down_proj", "w2", "c_proj", "out_proj", "dense_4h_to_h", "fc2",
})


def block_of(module: str) -> tuple[str, str] | None:
    """The tensor-parallel block a module belongs to, as (block module path, kind), or None.

    ``model.layers.3.self_attn.q_proj`` -> ``("model.layers.3.self_attn", "attention")``;
    ``bert.encoder.layer.0.output.dense`` -> ``("bert.encoder.layer.0.intermediate", "mlp")``;
    norms, residual adds and modules outside layers -> None.
    """
    match = _IN_LAYER.match(module)
    if match is None:
        return None
    rest = match.group("rest")
    for path, kind, name in _BLOCKS:
        if rest == path or rest.startswith(path + "."):
            return f"{match.group('layer')}.{name}", kind
    return None


def linear_role(module: str) -> str | None:
    """``"column"`` or ``"row"`` for a linear of a block named as in HF models, else None."""
    match = _IN_LAYER.match(module)
    if match is None:
        return None
    rest = match.group("rest")
    if rest == "intermediate.dense":  # BERT's MLP up-projection
        return COLUMN
    if rest in ("attention.output.dense", "output.dense"):  # BERT's down-projections
        return ROW
    last = rest.rsplit(".", 1)[-1]
    if last in _COLUMN_NAMES:
        return COLUMN
    if last in _ROW_NAMES:
        return ROW
    return None
