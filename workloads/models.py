"""Built-in models: HF ``transformers`` configs built with random weights (never downloaded).

Legend: L layers, h hidden size, f MLP (intermediate) size, a attention heads, a_kv key/value heads,
V vocabulary, s_max the longest sequence the model accepts. A model's weights do not change what a
forward pass computes or how long it takes, so random weights stand in for trained ones.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, PretrainedConfig

from sim.errors import InputError, suggest

__all__ = ["MODEL_CONFIGS", "MODELS", "TORCH_DTYPES_BY_NAME", "model_config", "build_model",
           "max_positions"]

#: Attention implementation asked of every model: PyTorch SDPA (on CPU, the flash kernel).
ATTN_IMPLEMENTATION = "sdpa"


def _gpt2_tiny() -> PretrainedConfig:
    # L=2, h=128, a=4, V=1024, s_max=512; f = 4h = 512
    return GPT2Config(n_layer=2, n_embd=128, n_head=4, vocab_size=1024, n_positions=512,
                      bos_token_id=None, eos_token_id=None, attn_implementation=ATTN_IMPLEMENTATION)


def _gpt2() -> PretrainedConfig:
    # GPT-2 small, 124M parameters (Radford et al. 2019): L=12, h=768, a=12, V=50257, s_max=1024
    return GPT2Config(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024,
                      attn_implementation=ATTN_IMPLEMENTATION)


def _llama_tiny() -> PretrainedConfig:
    # L=2, h=128, f=352, a=4, a_kv=2 (grouped-query attention), V=1024, s_max=2048
    return LlamaConfig(num_hidden_layers=2, hidden_size=128, intermediate_size=352,
                       num_attention_heads=4, num_key_value_heads=2, vocab_size=1024,
                       max_position_embeddings=2048, attn_implementation=ATTN_IMPLEMENTATION)


#: Model name -> factory of its config.
MODEL_CONFIGS: dict[str, Callable[[], PretrainedConfig]] = {
    "gpt2-tiny": _gpt2_tiny,
    "llama-tiny": _llama_tiny,
    "gpt2": _gpt2,
}
#: Names of the built-in models.
MODELS: tuple[str, ...] = tuple(MODEL_CONFIGS)

#: dtype names a model can be built in -> torch dtype.
TORCH_DTYPES_BY_NAME = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def model_config(name: str) -> PretrainedConfig:
    """The config of built-in model ``name``; an :class:`InputError` listing the known names."""
    factory = MODEL_CONFIGS.get(name)
    if factory is None:
        raise InputError(f"unknown model {name!r}; {suggest(name, MODELS)} (built-in models: "
                         f"{', '.join(MODELS)})", field="--model")
    return factory()


def build_model(config: PretrainedConfig, *, dtype: str = "fp32", seed: int = 0) -> nn.Module:
    """A causal LM of ``config`` with random weights drawn from ``seed``, in eval mode.

    The global torch RNG is left as it was.
    """
    if dtype not in TORCH_DTYPES_BY_NAME:
        raise InputError(f"unsupported dtype {dtype!r}; one of {', '.join(TORCH_DTYPES_BY_NAME)}",
                         field="--dtype")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=TORCH_DTYPES_BY_NAME[dtype])
    return model.eval()


def max_positions(config: PretrainedConfig) -> int | None:
    """The longest sequence ``config`` accepts (``n_positions`` / ``max_position_embeddings``)."""
    return getattr(config, "max_position_embeddings", None)
