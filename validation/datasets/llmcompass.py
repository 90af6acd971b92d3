"""LLMCompass real-hardware measurements (PrincetonUniversity/LLMCompass, ISCA'24), A100 only.

Source and method: ``ground_truth/llmcompass/README.md``. A100 80GB (taken as the SXM4 spec; the
artifact does not say which form factor), fp16, timed around eager calls (scope ``event``,
default clocks):

    matmul.csv                   [M, K] @ [K, N] GEMMs
    normalization_activation.csv softmax and layernorm over N of [M, N] (read + write 2 M N
                                 halves), GELU on M elements (read + write)
    allreduce_a100x4_nvlink.csv  all-reduce of ``size_bytes`` on 4 A100s over NVLink

Every row is on the fit GPU (A100), so this source only enters the calibration split.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from validation.datasets.common import read_csv, rows_frame

__all__ = ["SPEC", "load"]

SPEC = "nvidia-a100-sxm4-80gb"
_HALF = 2.0
_FLOPS_PER_ELEMENT = {"softmax": 5.0, "layernorm": 8.0, "gelu": 8.0}


def load(root: Path) -> pd.DataFrame:
    folder = root / "llmcompass"
    return pd.concat([_matmul(read_csv(folder / "matmul.csv")),
                      _norm_act(read_csv(folder / "normalization_activation.csv")),
                      _allreduce(read_csv(folder / "allreduce_a100x4_nvlink.csv"))],
                     ignore_index=True)


def _common(source: str) -> dict:
    return {"dataset": "llmcompass", "source": source, "spec": SPEC, "scope": "event",
            "clock_mode": "default", "dtype": "fp16"}


def _matmul(df: pd.DataFrame) -> pd.DataFrame:
    df = df[df["device"] == "A100"]
    return rows_frame(**_common("matmul.csv"), category="gemm", op="matmul", b=1.0,
                      m=df["M"].to_numpy(float), n=df["N"].to_numpy(float),
                      k=df["K"].to_numpy(float),
                      measured_s=df["latency_ms"].to_numpy(float) * 1e-3)


def _norm_act(df: pd.DataFrame) -> pd.DataFrame:
    df = df[df["device"] == "A100"]
    elements = df["M"].to_numpy(float) * df["N"].to_numpy(float)
    per_element = df["op"].map(_FLOPS_PER_ELEMENT).to_numpy(float)
    return rows_frame(**_common("normalization_activation.csv"), category="memory",
                      op=df["op"], nbytes=2.0 * elements * _HALF, flops=elements * per_element,
                      measured_s=df["latency_ms_derived"].to_numpy(float) * 1e-3)


def _allreduce(df: pd.DataFrame) -> pd.DataFrame:
    return rows_frame(**_common("allreduce_a100x4_nvlink.csv"), category="collective",
                      op="all_reduce", kind="allreduce",
                      size_bytes=df["size_bytes"].to_numpy(float), num_ranks=4.0,
                      measured_s=df["latency_us"].to_numpy(float) * 1e-6)
