"""Models: look up a config (built-in name or HF ``config.json``), size it, build it with random
weights (never downloaded).

A model's weights do not change what a forward pass computes or how long it takes, so random
weights stand in for trained ones. Decoders are built as causal LMs (``AutoModelForCausalLM``),
encoders (BERT and the other ``model_type`` values of HF's masked-LM table) as masked LMs.
Built-in configs and their sources: ``workloads.configs``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, PretrainedConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_MASKED_LM_MAPPING_NAMES,
)

from sim.errors import InputError, suggest
from workloads.configs import ATTN_IMPLEMENTATION, MODEL_ALIASES, MODEL_CONFIGS, MODELS

__all__ = ["MODEL_CONFIGS", "MODELS", "MODEL_ALIASES", "TORCH_DTYPES_BY_NAME", "MAX_LAYERS",
           "model_config", "config_from_file", "with_layers", "is_encoder", "num_experts",
           "build_model", "max_positions"]

#: dtype names a model can be built in -> torch dtype.
TORCH_DTYPES_BY_NAME = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: Most layers a ``layers`` override accepts (deeper than any published model).
MAX_LAYERS = 1000
#: Fields a config file must give (by their canonical HF names or an alias of its config class):
#: without them HF would silently use its class defaults, a different model.
_REQUIRED_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
_REQUIRED_IF_DEFINED = ("intermediate_size", "num_local_experts", "num_experts_per_tok")


def model_config(name: str) -> PretrainedConfig:
    """The config of built-in model ``name`` (or an alias, e.g. ``gpt2-small``); an
    :class:`InputError` listing the known names."""
    factory = MODEL_CONFIGS.get(MODEL_ALIASES.get(name, name))
    if factory is None:
        hint = suggest(name, (*MODELS, *MODEL_ALIASES))
        hint = hint if hint.startswith("did you mean") else f"built-in models: {', '.join(MODELS)}"
        raise InputError(f"unknown model {name!r}; {hint} (or give an HF config.json with "
                         "--hf-config)", field="--model")
    return factory()


def config_from_file(path: str | Path) -> PretrainedConfig:
    """An HF config from a ``config.json`` (``model_type`` + the fields of its config class).

    Raises :class:`InputError` naming the file and the field for a missing file, bad JSON, an
    unknown ``model_type`` or a missing size field (:data:`_REQUIRED_FIELDS`).
    """
    source = str(path)
    data = _read_json(Path(path))
    model_type = data.get("model_type")
    if not isinstance(model_type, str):
        raise InputError("missing field (the HF architecture, e.g. \"llama\")", source=source,
                         field="model_type")
    if model_type not in CONFIG_MAPPING:
        hint = suggest(model_type, CONFIG_MAPPING)
        raise InputError(f"unknown model_type {model_type!r}; {hint}", source=source,
                         field="model_type")
    config_class = CONFIG_MAPPING[model_type]
    for name in _required_fields(config_class):
        aliases = {name, config_class.attribute_map.get(name, name)}
        if not aliases & set(data):
            raise InputError("missing field (needed to size the model)", source=source,
                             field=name)
    fields = {k: v for k, v in data.items() if k != "model_type"}
    try:
        return config_class(**fields)
    except (TypeError, ValueError) as exc:
        raise InputError(f"invalid config: {exc}", source=source) from None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"no such config file {str(path)!r}", field="--hf-config") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"unreadable config: {exc}", source=str(path)) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON: {exc}", source=str(path)) from None
    if not isinstance(data, dict):
        raise InputError("expected a JSON object", source=str(path))
    return data


def _required_fields(config_class: type[PretrainedConfig]) -> list[str]:
    defined = set(vars(config_class())) | set(config_class.attribute_map)
    return [*_REQUIRED_FIELDS, *(f for f in _REQUIRED_IF_DEFINED if f in defined)]


def with_layers(config: PretrainedConfig, layers: int) -> PretrainedConfig:
    """A copy of ``config`` with L = ``layers`` (per-layer type lists cut or extended to match)."""
    config = copy.deepcopy(config)
    config.num_hidden_layers = layers
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list) and layer_types:
        config.layer_types = [layer_types[i % len(layer_types)] for i in range(layers)]
    return config


def is_encoder(config: PretrainedConfig) -> bool:
    """True for bidirectional encoders (BERT, RoBERTa, ...): built as masked LMs, no decode."""
    return config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not config.is_encoder_decoder


def num_experts(config: PretrainedConfig) -> int | None:
    """E of a mixture-of-experts config (``num_local_experts`` / ``num_experts``), else None."""
    experts = getattr(config, "num_local_experts", None) or getattr(config, "num_experts", None)
    return int(experts) if experts else None


def build_model(config: PretrainedConfig, *, dtype: str = "fp32", seed: int = 0) -> nn.Module:
    """A causal LM (or a masked LM for an encoder) of ``config`` with random weights drawn from
    ``seed``, in eval mode, attention ``sdpa`` unless the config names another implementation.
    The global torch RNG is left as it was.

    Under a ``FakeTensorMode`` (``workloads.fake``) the weights are fake: nothing is allocated.
    """
    if dtype not in TORCH_DTYPES_BY_NAME:
        raise InputError(f"unsupported dtype {dtype!r}; one of {', '.join(TORCH_DTYPES_BY_NAME)}",
                         field="--dtype")
    if config.is_encoder_decoder:
        raise InputError(f"encoder-decoder models ({config.model_type}) are not supported; "
                         "give a decoder-only or an encoder-only config", field="--hf-config")
    if is_encoder(config):
        auto = AutoModelForMaskedLM
    elif config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        auto = AutoModelForCausalLM
    else:
        raise InputError(f"model_type {config.model_type!r} has no causal- or masked-LM head in "
                         "transformers", field="--hf-config")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # a config that names its attention implementation (``"attn_implementation": "eager"``
        # in config.json: unfused matmul + softmax) keeps it; otherwise sdpa
        chosen = getattr(config, "_attn_implementation_internal", None) or ATTN_IMPLEMENTATION
        model = auto.from_config(config, dtype=TORCH_DTYPES_BY_NAME[dtype],
                                 attn_implementation=chosen)
    return model.eval()


def max_positions(config: PretrainedConfig) -> int | None:
    """The longest sequence ``config`` accepts (``n_positions`` / ``max_position_embeddings``)."""
    return getattr(config, "max_position_embeddings", None)
