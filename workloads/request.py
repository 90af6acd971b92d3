"""What to capture: a :class:`CaptureRequest`, validated once at the boundary.

Every bad value is an :class:`InputError` whose field is the command-line flag that sets it
(``--model``, ``--hf-config``, ``--phase``, ``--batch``, ``--seq``, ``--context``, ``--dtype``,
``--fake``, ``--threads``, ``--warmup``, ``--repeat``, ``--seed``, ``--layers``, ``--moe-skew``).
Legend: b batch, s sequence length, C context (decode), L layers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from transformers import PretrainedConfig

from sim.errors import InputError
from workloads.fake import MODES
from workloads.models import (
    MAX_LAYERS,
    TORCH_DTYPES_BY_NAME,
    config_from_file,
    is_encoder,
    max_positions,
    model_config,
    num_experts,
    with_layers,
)
from workloads.moe import MAX_SKEW, MoeRouting

__all__ = ["CaptureRequest", "make_request", "check_int", "PHASES_OF_MODELS", "MAX_BATCH",
           "MAX_REAL_TOKENS", "MAX_REPEATS"]

#: Phases of ``capture_model``: prefill (b x s prompt), decode (1 token after C), train (a step).
PHASES_OF_MODELS = ("prefill", "decode", "train")
#: Largest batch accepted: beyond it a request is a typo, not a workload.
MAX_BATCH = 4096
#: Largest number of tokens (b*s, or b*C for decode) of a real capture: on this machine's CPUs a
#: larger run takes minutes per step (GPT-2: 16384 tokens x 50257 x 4 B = 3.3 GB of logits alone).
#: Larger runs are for fake capture.
MAX_REAL_TOKENS = 16384
MAX_REPEATS = 1000


@dataclass(frozen=True)
class CaptureRequest:
    """A validated capture of built-in model ``name`` (or the config file ``hf_config``)."""

    name: str
    config: PretrainedConfig  # with ``layers`` applied
    phase: str
    batch: int
    seq: int
    context: int | None
    dtype: str
    mode: str
    threads: int
    warmup: int
    repeat: int
    seed: int
    layers: int | None
    routing: MoeRouting | None  # None for a dense model
    hf_config: str | None = None


def make_request(name: str | None, *, hf_config: str | Path | None, phase: str, batch: int,
                 seq: int, context: int | None, dtype: str, mode: str, threads: int, warmup: int,
                 repeat: int, seed: int, layers: int | None,
                 moe_skew: float | None) -> CaptureRequest:
    """Check every argument of ``workloads.capture_model`` (see the module doc)."""
    name, config = _config(name, hf_config)
    _choice("--phase", phase, PHASES_OF_MODELS)
    if phase == "decode" and is_encoder(config):
        raise InputError(f"decode is not meaningful for {name}: an encoder reads the whole "
                         "sequence at once and has no KV cache; use prefill or train",
                         field="--phase")
    _choice("--fake", mode, MODES)
    _choice("--dtype", dtype, TORCH_DTYPES_BY_NAME)
    context = _check_lengths(config, phase=phase, batch=batch, seq=seq, context=context,
                             mode=mode)
    check_int("--threads", threads, 1, os.cpu_count() or 1, why="this machine's CPU count")
    check_int("--warmup", warmup, 0, MAX_REPEATS)
    check_int("--repeat", repeat, 1, MAX_REPEATS)
    check_int("--seed", seed, 0, 2**63 - 1)
    if layers is not None:
        check_int("--layers", layers, 1, MAX_LAYERS)
        config = with_layers(config, layers)
    return CaptureRequest(
        name=name, config=config, phase=phase, batch=batch, seq=seq, context=context,
        dtype=dtype, mode=mode, threads=threads, warmup=warmup, repeat=repeat, seed=seed,
        layers=layers, routing=_routing(config, moe_skew),
        hf_config=str(hf_config) if hf_config is not None else None)


def _config(name: str | None, hf_config: str | Path | None) -> tuple[str, PretrainedConfig]:
    if hf_config is not None:
        if name is not None:
            raise InputError("give a built-in model name or an HF config file, not both",
                             field="--hf-config")
        config = config_from_file(hf_config)
        return config.model_type, config
    if name is None:
        raise InputError("name a built-in model or give an HF config file (--hf-config)",
                         field="--model")
    return name, model_config(name)


def _check_lengths(config: PretrainedConfig, *, phase: str, batch: int, seq: int,
                   context: int | None, mode: str) -> int | None:
    """b, s and C in range (positions of the model, tokens of a real run); returns C."""
    check_int("--batch", batch, 1, MAX_BATCH)
    positions = max_positions(config)
    if phase == "decode":
        context = seq if context is None else context
        check_int("--context", context, 1, (positions or 2**31) - 1,
                  why="the new token needs a position after them")
        tokens = batch * context
    else:
        if context is not None:
            raise InputError("only a decode step has a context; use --seq for the prompt length",
                             field="--context")
        check_int("--seq", seq, 1, positions or 2**31, why="the model's maximum positions")
        tokens = batch * seq
    if mode == "real" and tokens > MAX_REAL_TOKENS:
        raise InputError(f"{tokens} tokens is more than a real capture on this CPU allows "
                         f"({MAX_REAL_TOKENS}); capture with fake tensors (--fake)",
                         field="--batch")
    return context


def _routing(config: PretrainedConfig, moe_skew: float | None) -> MoeRouting | None:
    if num_experts(config) is None:
        if moe_skew is not None:
            raise InputError("the model has no mixture-of-experts layers", field="--moe-skew")
        return None
    skew = 0.0 if moe_skew is None else moe_skew
    if isinstance(skew, bool) or not isinstance(skew, int | float) or not 0 <= skew <= MAX_SKEW:
        raise InputError(f"must be a Zipf exponent between 0 (balanced) and {MAX_SKEW:g}, got "
                         f"{moe_skew!r}", field="--moe-skew")
    return MoeRouting(skew=float(skew))


def _choice(flag: str, value: object, choices) -> None:
    if value not in choices:
        raise InputError(f"unknown value {value!r}; one of {', '.join(choices)}", field=flag)


def check_int(flag: str, value: object, low: int, high: int, *, why: str = "") -> None:
    """An :class:`InputError` on ``flag`` unless ``value`` is an int in [low, high]."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InputError(f"must be an integer, got {value!r}", field=flag)
    if not low <= value <= high:
        limit = f" ({why})" if why else ""
        raise InputError(f"must be between {low} and {high}{limit}, got {value}", field=flag)
