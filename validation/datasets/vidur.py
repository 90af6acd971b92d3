"""Vidur profiling tables (microsoft/vidur): per-op kernel times of Llama decoder layers.

Source and method: ``ground_truth/vidur/README.md``. ``mlp.csv`` gives, per token count T and
tensor-parallel degree t, the summed CUDA-kernel time (scope ``kernel``, default clocks, fp16) of
each non-attention op of one layer's shard. Shapes (h = n_embd, f = n_expanded_embd, d = h /
n_head, heads and f divided by t on one GPU):

    attn_pre_proj   GEMM [T, h] x [h, (n_head + 2 n_kv_head) d / t]
    attn_post_proj  GEMM [T, h / t] x [h / t, h]
    mlp_up_proj     GEMM [T, h] x [h, 2 f / t]         (gate and up, gated MLP)
    mlp_down_proj   GEMM [T, f / t] x [f / t, h]
    *_layernorm     RMSNorm of [T, h]: read x, write y
    attn_rope       rotary embedding of q [T, n_head d / t] and k [T, n_kv_head d / t], in place
    mlp_act         SiLU-and-multiply: read [T, 2 f / t], write [T, f / t]
    add             residual add of [T, h]: read two, write one
    emb             embedding gather of T rows of h (vocab-parallel)

:data:`LAYER_OPS` are summed per (model, GPU, T, t) for the end-to-end layer check.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from validation.datasets.common import read_csv, rows_frame

__all__ = ["GPUS", "MODELS", "LAYER_OPS", "load"]

GPUS = {"a100": "nvidia-a100-sxm4-80gb", "h100": "nvidia-h100-sxm5-80gb"}
MODELS = ("Llama-2-7b-hf", "Llama-2-70b-hf", "Meta-Llama-3-8B")
LAYER_OPS = ("input_layernorm", "attn_pre_proj", "attn_rope", "attn_post_proj",
             "post_attention_layernorm", "mlp_up_proj", "mlp_act", "mlp_down_proj", "add")
_WIDTH = 2.0  # fp16
# FLOP per element of the memory-bound ops (they never bind: bytes do)
_FLOPS_PER_ELEMENT = {"norm": 4.0, "rope": 3.0, "act": 5.0, "add": 1.0, "emb": 0.0}


def load(root: Path) -> pd.DataFrame:
    frames = []
    for gpu, spec in GPUS.items():
        for model in MODELS:
            path = root / "vidur" / "compute" / gpu / "meta-llama" / model / "mlp.csv"
            if path.is_file():
                frames.append(_model_rows(read_csv(path), spec, model, f"{gpu}/{model}/mlp.csv"))
    return pd.concat(frames, ignore_index=True)


def _model_rows(df: pd.DataFrame, spec: str, model: str, source: str) -> pd.DataFrame:
    first = df.iloc[0]
    h, f = float(first["n_embd"]), float(first["n_expanded_embd"])
    heads, kv_heads = float(first["n_head"]), float(first["n_kv_head"])
    d = h / heads
    tokens = df["num_tokens"].to_numpy(float)
    t = df["num_tensor_parallel_workers"].to_numpy(float)
    common = {"dataset": "vidur", "source": source, "spec": spec, "dtype": "fp16",
              "scope": "kernel", "clock_mode": "default", "model": model, "num_tokens": tokens,
              "tp": t, "source_row": np.arange(len(df))}
    gemms = {"attn_pre_proj": ((heads + 2 * kv_heads) * d / t, h),
             "attn_post_proj": (h, h / t), "mlp_up_proj": (2 * f / t, h),
             "mlp_down_proj": (h, f / t)}
    # The profiled model repeats one decoder block: a GEMM's weights come back to L2 only after
    # the block's other weights and activations streamed through it, so the working set that
    # decides residency is the whole block (its four weight matrices plus the activations).
    block = sum(n * k for n, k in gemms.values()) * _WIDTH + 2 * tokens * (h + f / t) * _WIDTH
    frames = [rows_frame(**common, category="gemm", op=op, b=1.0, m=tokens, n=n, k=k,
                         resident_bytes=block, measured_s=_median_s(df, op))
              for op, (n, k) in gemms.items()]
    # op -> (elements touched in a pass, bytes moved, FLOP kind, the part of the bytes moved
    # that the kernel just before it wrote: the block runs emb / add -> input_layernorm -> QKV
    # GEMM -> attn_rope (q and k) -> ... -> O GEMM -> post_attention_layernorm -> up GEMM ->
    # mlp_act (gate and up) -> down GEMM -> add (its output; the residual is older))
    qk = tokens * (heads + kv_heads) * d / t
    streams = {  # elements, moved, FLOP kind, read, fresh (elements)
        "input_layernorm": (tokens * h, 2 * tokens * h, "norm", tokens * h, tokens * h),
        "post_attention_layernorm": (tokens * h, 2 * tokens * h, "norm", tokens * h, tokens * h),
        "attn_rope": (qk, 2 * qk, "rope", qk, qk),
        "mlp_act": (tokens * f / t, 3 * tokens * f / t, "act", 2 * tokens * f / t,
                    2 * tokens * f / t),
        "add": (tokens * h, 3 * tokens * h, "add", 2 * tokens * h, tokens * h),
        "emb": (tokens * h, 2 * tokens * h, "emb", tokens * h, 0.0 * tokens),
    }
    steps = _row_steps(h, f / t, (heads / t, kv_heads / t, d))
    for op, (elements, moved, kind, read, fresh) in streams.items():
        frames.append(rows_frame(**common, category="memory", op=op, nbytes=moved * _WIDTH,
                                 flops=elements * _FLOPS_PER_ELEMENT[kind], resident_bytes=block,
                                 read_bytes=read * _WIDTH, fresh_bytes=fresh * _WIDTH,
                                 row_steps=steps.get(op, np.nan), measured_s=_median_s(df, op)))
    return pd.concat(frames, ignore_index=True)


def _row_steps(h: float, ff: np.ndarray, heads: tuple) -> dict[str, np.ndarray]:
    """Loop steps per CTA of sarathi-serve's one-CTA-per-token kernels (csrc/, vLLM-derived):
    rms_norm runs min(h, 1024) threads over h twice (sum of squares, then normalize);
    silu_and_mul min(d, 1024) threads over d = f / t; rotary_embedding min(n_q d / 2, 512)
    threads over the q pairs, then the k pairs. The add and the embedding are PyTorch kernels
    with no per-token loop (NaN)."""
    q_heads, kv_heads, d = heads
    norm = 2.0 * np.ceil(h / min(h, 1024.0))
    rope_threads = np.minimum(q_heads * d / 2, 512.0)
    return {"input_layernorm": norm, "post_attention_layernorm": norm,
            "mlp_act": np.ceil(ff / np.minimum(ff, 1024.0)),
            "attn_rope": np.ceil(q_heads * d / 2 / rope_threads)
            + np.ceil(kv_heads * d / 2 / rope_threads)}


def _median_s(df: pd.DataFrame, op: str) -> np.ndarray:
    return df[f"time_stats.{op}.median"].to_numpy(float) * 1e-3
