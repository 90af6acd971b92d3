"""Built-in model configs: published architectures as HF ``transformers`` configs (not downloaded).

Legend: L layers, h hidden size, f MLP (intermediate) size, a attention heads, a_kv key/value heads,
V vocabulary, s_max the longest sequence (positions) the model accepts, theta the RoPE base,
E experts and k experts per token (MoE). Each full-size entry cites the paper and the published HF
config (``config.json`` of the named Hub repository) its numbers come from. The ``-tiny`` entries
are small test models of the same families.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from transformers import (
    BertConfig,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    MixtralConfig,
    OPTConfig,
    PretrainedConfig,
)

__all__ = ["MODEL_CONFIGS", "MODEL_ALIASES", "MODELS", "ATTN_IMPLEMENTATION"]

#: Attention implementation asked of every model: PyTorch SDPA (on CPU, the flash kernel).
ATTN_IMPLEMENTATION = "sdpa"


def _gpt2(L: int, h: int, a: int, *, V: int = 50257, s_max: int = 1024) -> PretrainedConfig:
    # f = 4h (GPT2Config n_inner=None); learned positions; tied input / output embeddings
    return GPT2Config(n_layer=L, n_embd=h, n_head=a, vocab_size=V, n_positions=s_max,
                      attn_implementation=ATTN_IMPLEMENTATION)


def _llama(L: int, h: int, f: int, a: int, a_kv: int, *, V: int, s_max: int,
           theta: float = 10000.0, **extra: Any) -> PretrainedConfig:
    return LlamaConfig(num_hidden_layers=L, hidden_size=h, intermediate_size=f,
                       num_attention_heads=a, num_key_value_heads=a_kv, vocab_size=V,
                       max_position_embeddings=s_max, rope_theta=theta, rms_norm_eps=1e-5,
                       attn_implementation=ATTN_IMPLEMENTATION, **extra)


def _mixtral(L: int, h: int, f: int, a: int, a_kv: int, *, V: int, s_max: int, theta: float,
             E: int, k: int) -> PretrainedConfig:
    return MixtralConfig(num_hidden_layers=L, hidden_size=h, intermediate_size=f,
                         num_attention_heads=a, num_key_value_heads=a_kv, vocab_size=V,
                         max_position_embeddings=s_max, rope_theta=theta, num_local_experts=E,
                         num_experts_per_tok=k, sliding_window=None, rms_norm_eps=1e-5,
                         attn_implementation=ATTN_IMPLEMENTATION)


def _bert(L: int, h: int, f: int, a: int, *, V: int = 30522, s_max: int = 512) -> PretrainedConfig:
    return BertConfig(num_hidden_layers=L, hidden_size=h, intermediate_size=f,
                      num_attention_heads=a, vocab_size=V, max_position_embeddings=s_max,
                      attn_implementation=ATTN_IMPLEMENTATION)


#: Model name -> factory of its config.
MODEL_CONFIGS: dict[str, Callable[[], PretrainedConfig]] = {
    # test models: L=2, h=128 (tiny widths, real structure)
    "gpt2-tiny": lambda: GPT2Config(n_layer=2, n_embd=128, n_head=4, vocab_size=1024,
                                    n_positions=512, bos_token_id=None, eos_token_id=None,
                                    attn_implementation=ATTN_IMPLEMENTATION),
    "llama-tiny": lambda: LlamaConfig(num_hidden_layers=2, hidden_size=128, intermediate_size=352,
                                      num_attention_heads=4, num_key_value_heads=2,
                                      vocab_size=1024, max_position_embeddings=2048,
                                      attn_implementation=ATTN_IMPLEMENTATION),
    # E=4 experts, k=2 per token, a_kv=2
    "mixtral-tiny": lambda: _mixtral(2, 128, 256, 4, 2, V=1024, s_max=2048, theta=1e6, E=4, k=2),
    # BERT-Tiny (Turc et al. 2019, "Well-Read Students Learn Better";
    # google/bert_uncased_L-2_H-128_A-2)
    "bert-tiny": lambda: _bert(2, 128, 512, 2),
    # GPT-2 (Radford et al. 2019, Table 2; openai-community/gpt2, -medium, -large, -xl)
    "gpt2": lambda: _gpt2(12, 768, 12),  # 124M
    "gpt2-medium": lambda: _gpt2(24, 1024, 16),  # 355M
    "gpt2-large": lambda: _gpt2(36, 1280, 20),  # 774M
    "gpt2-xl": lambda: _gpt2(48, 1600, 25),  # 1.5B
    # Llama 2 (Touvron et al. 2023, "Llama 2", Table 1: 4k context, GQA for 70B;
    # meta-llama/Llama-2-7b-hf, -13b-hf, -70b-hf: V=32000, theta=1e4)
    "llama-2-7b": lambda: _llama(32, 4096, 11008, 32, 32, V=32000, s_max=4096),
    "llama-2-13b": lambda: _llama(40, 5120, 13824, 40, 40, V=32000, s_max=4096),
    "llama-2-70b": lambda: _llama(80, 8192, 28672, 64, 8, V=32000, s_max=4096),
    # Llama 3 (Grattafiori et al. 2024, "The Llama 3 Herd of Models", Table 3;
    # meta-llama/Meta-Llama-3-8B, -70B: V=128256, s_max=8192, theta=5e5)
    "llama-3-8b": lambda: _llama(32, 4096, 14336, 32, 8, V=128256, s_max=8192, theta=500000.0),
    "llama-3-70b": lambda: _llama(80, 8192, 28672, 64, 8, V=128256, s_max=8192, theta=500000.0),
    # Mistral 7B (Jiang et al. 2023, "Mistral 7B", Table 1; mistralai/Mistral-7B-v0.1:
    # s_max=32768, sliding window 4096, theta=1e4)
    "mistral-7b": lambda: MistralConfig(
        num_hidden_layers=32, hidden_size=4096, intermediate_size=14336, num_attention_heads=32,
        num_key_value_heads=8, vocab_size=32000, max_position_embeddings=32768,
        sliding_window=4096, rope_theta=10000.0, rms_norm_eps=1e-5,
        attn_implementation=ATTN_IMPLEMENTATION),
    # Mixtral 8x7B (Jiang et al. 2024, "Mixtral of Experts", Table 1;
    # mistralai/Mixtral-8x7B-v0.1: s_max=32768, theta=1e6, no sliding window)
    "mixtral-8x7b": lambda: _mixtral(32, 4096, 14336, 32, 8, V=32000, s_max=32768, theta=1e6,
                                     E=8, k=2),
    # BERT (Devlin et al. 2019, Sec. 3: BASE L=12 H=768 A=12, LARGE L=24 H=1024 A=16, f=4H;
    # google-bert/bert-base-uncased, bert-large-uncased: V=30522, s_max=512)
    "bert-base": lambda: _bert(12, 768, 3072, 12),
    "bert-large": lambda: _bert(24, 1024, 4096, 16),
    # OPT (Zhang et al. 2022, "OPT: Open Pre-trained Transformer Language Models", Table 1:
    # 125M L=12 h=768 a=12; facebook/opt-125m: f=3072, V=50272, s_max=2048, pre-norm)
    "opt-125m": lambda: OPTConfig(num_hidden_layers=12, hidden_size=768, ffn_dim=3072,
                                  num_attention_heads=12, vocab_size=50272,
                                  max_position_embeddings=2048, word_embed_proj_dim=768,
                                  do_layer_norm_before=True,
                                  attn_implementation=ATTN_IMPLEMENTATION),
}
#: Other names accepted for a built-in model.
MODEL_ALIASES: dict[str, str] = {"gpt2-small": "gpt2"}
#: Names of the built-in models.
MODELS: tuple[str, ...] = tuple(MODEL_CONFIGS)
