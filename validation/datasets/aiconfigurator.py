"""AIConfigurator perf database (ai-dynamo/aiconfigurator): GEMM, attention, NCCL on five GPUs.

Source and method: ``ground_truth/aiconfigurator/README.md``. Every row is one operator call
measured with CUDA-graph replay (scope ``graph``) with application clocks locked at the maximum
(``locked``). GEMMs are vLLM ``RowParallelLinear`` calls, x[m, k] @ W[n, k]^T, bf16 (and
per-tensor fp8 on H100); six layers with different weights run back to back, so the working set
that competes for L2 is six weight matrices (``resident_bytes``). Attention is the vLLM backend's
forward (FlashAttention-2 on A100, FlashAttention-3 on H100/H200, FlashInfer/TRT-LLM on B200),
causal prefill of ``isl`` tokens or decode of one token over ``step`` cached ones. NCCL rows are
nccl-tests out-of-place times on 2/4/8 GPUs of one node: the mean over a loop of back-to-back
calls, i.e. device time (scope ``kernel``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from validation.datasets.common import read_csv, rows_frame

__all__ = ["SYSTEMS", "load"]

#: file prefix -> tksim spec name
SYSTEMS = {
    "a100_sxm": "nvidia-a100-sxm4-80gb",
    "h100_sxm": "nvidia-h100-sxm5-80gb",
    "h200_sxm": "nvidia-h200-sxm-141gb",
    "b200_sxm": "nvidia-b200",
    "l40s": "nvidia-l40s",
}
_GEMM_FILES = ("gemm", "gemm_sglang")
_GEMM_LAYERS = 6  # the collector cycles six weight matrices per measurement
_NCCL_KINDS = {"all_reduce": "allreduce", "all_gather": "allgather",
               "reduce_scatter": "reducescatter", "alltoall": "alltoall"}
_DTYPES = {"bfloat16": "bf16", "fp8": "fp8", "half": "fp16", "int8": "int8"}


def load(root: Path) -> pd.DataFrame:
    """All AIConfigurator rows under ``root`` (the ground-truth folder)."""
    folder = root / "aiconfigurator"
    frames = []
    for prefix, spec in SYSTEMS.items():
        for kind in _GEMM_FILES:
            path = folder / f"{prefix}_{kind}.csv"
            if path.is_file():
                frames.append(_gemm(read_csv(path), spec, path.name))
        for phase in ("context", "generation"):
            path = folder / f"{prefix}_{phase}_attention.csv"
            if path.is_file():
                frames.append(_attention(read_csv(path), spec, path.name, phase))
        frames.append(_nccl(read_csv(folder / f"{prefix}_nccl.csv"), spec, f"{prefix}_nccl.csv"))
    return pd.concat(frames, ignore_index=True)


def _common(spec: str, source: str) -> dict:
    return {"dataset": "aiconfigurator", "source": source, "spec": spec, "scope": "graph",
            "clock_mode": "locked"}


def _gemm(df: pd.DataFrame, spec: str, source: str) -> pd.DataFrame:
    dtype = df["gemm_dtype"].map(_DTYPES) if "gemm_dtype" in df else "bf16"
    width = np.where(np.asarray(dtype) == "fp8", 1.0, 2.0)
    m, n, k = (df[c].to_numpy(float) for c in ("m", "n", "k"))
    resident = (_GEMM_LAYERS * n * k + m * k + m * n) * width
    category = np.where(np.asarray(dtype) == "fp8", "gemm_fp8", "gemm")
    return rows_frame(**_common(spec, source), category=category, op="linear", dtype=dtype,
                      b=1.0, m=m, n=n, k=k, resident_bytes=resident,
                      measured_s=df["latency_ms"].to_numpy(float) * 1e-3)


def _attention(df: pd.DataFrame, spec: str, source: str, phase: str) -> pd.DataFrame:
    isl = df["isl"].to_numpy(float)
    if phase == "context":
        s_q, s_k, op = isl, isl, "prefill"
    else:
        s_q, s_k, op = np.ones_like(isl), df["step"].to_numpy(float) + 1, "decode"
    return rows_frame(**_common(spec, source), category="attention", op=op, dtype="bf16",
                      b=df["batch_size"].to_numpy(float), h_q=df["num_heads"].to_numpy(float),
                      h_kv=df["num_key_value_heads"].to_numpy(float), s_q=s_q, s_k=s_k,
                      d=df["head_dim"].to_numpy(float),
                      measured_s=df["latency_ms"].to_numpy(float) * 1e-3)


def _nccl(df: pd.DataFrame, spec: str, source: str) -> pd.DataFrame:
    kind = df["op_name"].map(_NCCL_KINDS)
    common = {**_common(spec, source), "scope": "kernel"}  # nccl-tests: events around a loop
    return rows_frame(**common, category="collective", op=df["op_name"],
                      dtype=df["nccl_dtype"].map(_DTYPES), kind=kind,
                      size_bytes=df["message_bytes"].to_numpy(float),
                      num_ranks=df["num_gpus"].to_numpy(float),
                      measured_s=df["latency_ms"].to_numpy(float) * 1e-3)
