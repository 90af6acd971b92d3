"""NeuSight held-out op dataset (sitar-lab/NeuSight, ASPLOS'25): fp32 kernels on many GPUs.

Source and method: ``ground_truth/neusight/README.md``. Each row is one PyTorch op timed with CUDA
events around a single eager call (scope ``event``, default clocks), **fp32** without TF32, so
GEMMs run on the CUDA cores (SGEMM) at the spec's fp32 matrix peak. Only GPUs with a tksim spec
are kept: A100 80GB PCIe and A100 40GB PCIe (the fit GPU family) and H100 80GB HBM3 (SXM, held
out; NeuSight has only bmm and linear on it). Shapes:

    bmm     A[B, M, N] @ B[B, N, K]    -> GEMM b=B, m=M, k=N, n=K (contraction over N)
    linear  x[B, M, N] @ W[K, N]^T + b -> GEMM m=B*M, k=N, n=K
    elem    binary (add, mul, pow, div) on two [B, H]: 3 B H words moved;
            tensor-scalar (addu, ...) and unary (relu, gelu, tanh): 2 B H words
    ln      LayerNorm over H of [B, H]: read x, write y (2 B H words, + 2 H of weights)
    softmax softmax over H of [B, H]: read x, write y (2 B H words)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from validation.datasets.common import read_csv, rows_frame

__all__ = ["DEVICES", "load"]

#: NeuSight ``Device`` -> tksim spec name (GPUs without a spec are skipped)
DEVICES = {
    "NVIDIA A100 80GB PCIe": "nvidia-a100-pcie-80gb",
    "NVIDIA A100-PCIE-40GB": "nvidia-a100-pcie-40gb",
    "NVIDIA H100 80GB HBM3": "nvidia-h100-sxm5-80gb",
}
_WORD = 4.0  # fp32
_BINARY = {"add", "mul", "pow", "div"}
_FLOPS_PER_ELEMENT = {"gelu": 8.0, "tanh": 8.0, "pow": 4.0, "powu": 4.0, "ln": 8.0,
                      "softmax": 5.0}


def load(root: Path) -> pd.DataFrame:
    folder = root / "neusight" / "op_dataset_test"
    frames = [_gemm(_known(read_csv(folder / f"{op}.csv")), op) for op in ("bmm", "linear")]
    frames += [_stream(_known(read_csv(folder / f"{op}.csv")), op)
               for op in ("elem", "ln", "softmax")]
    return pd.concat(frames, ignore_index=True)


def _known(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["Device"].isin(DEVICES)].reset_index(drop=True)


def _common(df: pd.DataFrame, source: str) -> dict:
    return {"dataset": "neusight", "source": source, "spec": df["Device"].map(DEVICES),
            "dtype": "fp32", "scope": "event", "clock_mode": "default",
            "measured_s": df["Latency"].to_numpy(float) * 1e-3}


def _gemm(df: pd.DataFrame, op: str) -> pd.DataFrame:
    b, m, n, k = (df[c].to_numpy(float) for c in ("B", "M", "N", "K"))
    if op == "bmm":
        shape = {"b": b, "m": m, "n": k, "k": n}
    else:
        shape = {"b": np.ones_like(b), "m": b * m, "n": k, "k": n}
    return rows_frame(**_common(df, f"op_dataset_test/{op}.csv"), category="gemm", op=op,
                      **shape)


def _stream(df: pd.DataFrame, kind: str) -> pd.DataFrame:
    op = df["OPName"].astype(str).to_numpy()
    elements = df["B"].to_numpy(float) * df["H"].to_numpy(float)
    words = np.where(np.isin(op, list(_BINARY)), 3.0, 2.0) * elements
    if kind == "ln":
        words = words + 2.0 * df["H"].to_numpy(float)
    per_element = np.array([_FLOPS_PER_ELEMENT.get(o, 1.0) for o in op])
    return rows_frame(**_common(df, f"op_dataset_test/{kind}.csv"), category="memory", op=op,
                      nbytes=words * _WORD, flops=elements * per_element)
