"""A model's host profile: the Python time before each op, measured on a shrunken twin.

A step's host time (the model code's Python and the framework between two ops) is a property of
the code, not of the tensor sizes: the twin runs the same code on the same layers, heads,
experts and sequence, with every width shrunk to :data:`TWIN_HEAD_DIM` per head and a vocabulary
of at most :data:`TWIN_VOCAB`. Its steps take a few ms and touch so little memory that its code
stays in the caches: each op's host time there (``Op.warm_host_s``) is the code's *warm* cost.
A full-size step evicts that code between two runs of it (its own data, and the other tenants of
a shared cache); :mod:`sim.cost.cpu_host` prices how much slower it then runs.

Measured on this machine (2026-11-29, 1 thread; host time of a step, real / its twin): gpt2-tiny
prefill 481 / 384 us, llama-tiny decode 386 / 332, bert-tiny prefill 954 / 322 (its 15.6 MB
embedding and LM head run once a step and flush the caches), GPT-2 prefill 8215 / 2014, GPT-2
decode 2919 / 1218, OPT-125m prefill 5808 / 1411, OPT-125m decode 2790 / 1065.

The twin must issue the same ops in the same order (names compared); a model whose code path
depends on a width (or a config family this module cannot shrink) gets no profile, and the
capture says why.
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PretrainedConfig

from sim.trace import Op

__all__ = ["TWIN_HEAD_DIM", "TWIN_VOCAB", "twin_config", "warm_host_times"]

#: Width of each attention head of the twin.
TWIN_HEAD_DIM = 8
#: Largest vocabulary of the twin (its embedding and LM head stay in the caches).
TWIN_VOCAB = 512
#: Config fields of a model's width (hidden size; embedding projection) across HF families.
_WIDTH_FIELDS = ("hidden_size", "n_embd", "d_model", "word_embed_proj_dim")
#: Config fields of the MLP's inner width (MoE experts' and shared experts' too).
_INNER_FIELDS = ("intermediate_size", "n_inner", "ffn_dim", "moe_intermediate_size",
                 "shared_expert_intermediate_size")
_HEAD_FIELDS = ("num_attention_heads", "n_head")
_TOKEN_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id")


def twin_config(config: PretrainedConfig) -> PretrainedConfig | str:
    """The shrunken twin of ``config`` (module doc), or why there is none."""
    data = config.to_dict()
    heads = next((data[f] for f in _HEAD_FIELDS if data.get(f)), None)
    if not isinstance(heads, int) or not any(data.get(f) for f in _WIDTH_FIELDS):
        return f"{config.model_type}: no head count or width field to shrink"
    width = heads * TWIN_HEAD_DIM
    for name in _WIDTH_FIELDS:
        if data.get(name):
            data[name] = width
    for name in _INNER_FIELDS:
        if data.get(name):
            data[name] = 2 * width
    if data.get("head_dim"):
        data["head_dim"] = TWIN_HEAD_DIM
    vocab = min(int(data.get("vocab_size") or TWIN_VOCAB), TWIN_VOCAB)
    data["vocab_size"] = vocab
    for name in _TOKEN_FIELDS:  # ids past the twin's vocabulary: none (HF warns otherwise)
        token = data.get(name)
        if isinstance(token, int) and token >= vocab:
            data[name] = None
    return type(config).from_dict(data)


def warm_host_times(ops: Sequence[Op], twin_ops: Sequence[Op]) -> list[float] | str:
    """Each op's ``warm_host_s``: the ``measured_host_s`` of the twin's op at its place; or why
    not (the twin issued other ops, or was not timed from inside the dispatcher)."""
    if len(ops) != len(twin_ops):
        return f"the twin issued {len(twin_ops)} ops, the model {len(ops)}"
    for op, twin in zip(ops, twin_ops, strict=True):
        if op.name != twin.name:
            return f"the twin's op {twin.id} is {twin.name}, the model's {op.name}"
    if any(twin.measured_host_s is None for twin in twin_ops):
        return "the twin's host time was not measured (no dispatcher timer)"
    return [float(twin.measured_host_s) for twin in twin_ops]
