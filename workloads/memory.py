"""Will a real capture fit in this machine's memory? An estimate, checked before building.

Legend: P parameters, B bytes per element of the model's dtype, L layers, b batch, s sequence,
C context (decode), h hidden, f MLP size, h_kv x d the key/value width, V vocabulary.

    weights          P B
    train            + gradients P B + AdamW moments 2 P B
                     + activations kept for backward: L x 34 s b h x B / 2 (Korthikanti et al.
                       2022, "Reducing Activation Recomputation in Large Transformer Models",
                       Sec. 4.1: 34 sbh bytes per layer at 2-byte precision, flash attention)
                     + logits: b s V (B + 3 x 4): logits, their fp32 copy, log-softmax, gradient
    prefill          + KV cache 2 L b s h_kv d B + one layer's temporaries b s (4h + 2f) B
                     + logits b s V (B + 4)
    decode           + KV cache 2 L b (C + 1) h_kv d B + logits b V (B + 4)
    + the process itself (Python, torch, transformers): :data:`PROCESS_BYTES`.
"""

from __future__ import annotations

from transformers import PretrainedConfig

from sim.errors import InputError

__all__ = ["estimate_bytes", "available_bytes", "check_fits", "PROCESS_BYTES"]

GiB = 2**30
#: Resident memory of a Python process with torch and transformers imported (measured on this
#: machine, 2025, /usr/bin/time -v: ~0.34 GB), rounded up.
PROCESS_BYTES = 0.5 * GiB
_FP32_BYTES = 4
#: Korthikanti et al. 2022, Sec. 4.1: activation bytes per layer per (s b h) at 2-byte precision.
_ACTIVATION_BYTES_PER_SBH = 34


def estimate_bytes(config: PretrainedConfig, *, phase: str, batch: int, seq: int, context: int,
                   dtype_bytes: int, num_params: int) -> dict[str, float]:
    """The parts of a real capture's peak memory in bytes (see the module doc)."""
    b, s, B, V = batch, seq, dtype_bytes, config.vocab_size
    L, h = config.num_hidden_layers, config.hidden_size
    f = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * h
    heads = config.num_attention_heads
    kv_width = (getattr(config, "num_key_value_heads", None) or heads) * (
        getattr(config, "head_dim", None) or h // heads)
    parts = {"process": PROCESS_BYTES, "weights": num_params * B}
    if phase == "train":
        parts["gradients"] = num_params * B
        parts["adamw_state"] = 2 * num_params * B
        parts["activations"] = L * _ACTIVATION_BYTES_PER_SBH * s * b * h * B / 2
        parts["logits"] = b * s * V * (B + 3 * _FP32_BYTES)
    elif phase == "decode":
        parts["kv_cache"] = 2 * L * b * (context + 1) * kv_width * B
        parts["logits"] = b * V * (B + _FP32_BYTES)
    else:
        parts["kv_cache"] = 2 * L * b * s * kv_width * B
        parts["activations"] = b * s * (4 * h + 2 * f) * B
        parts["logits"] = b * s * V * (B + _FP32_BYTES)
    return parts


def available_bytes() -> float | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes; None where there is no such file."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024  # the file says kB, meaning KiB
    except OSError:
        return None
    return None


def check_fits(parts: dict[str, float], *, what: str) -> None:
    """Raise :class:`InputError` (field ``--model``) if the estimate exceeds available memory."""
    available = available_bytes()
    need = sum(parts.values())
    if available is None or need <= available:
        return
    detail = ", ".join(f"{k} {v / GiB:.1f}" for k, v in parts.items() if v >= 0.05 * GiB)
    raise InputError(f"a real {what} needs about {need / GiB:.1f} GiB ({detail}) but this machine "
                     f"has {available / GiB:.1f} GiB available; capture it with fake tensors "
                     "instead (--fake, mode='fake')", field="--model")
