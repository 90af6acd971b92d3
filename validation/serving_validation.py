"""Tensor-parallel inference end to end: predicted vs measured batch latency of TensorRT-LLM.

Data: ``llm_inference_bench/TP_PP_Results.csv`` (argonne-lcf/LLM-Inference-Bench): TensorRT-LLM,
fp16, a batch of B sequences with L input and L output tokens on 1, 2 or 4 "Nvidia A100" GPUs,
``Latency`` = prefill plus generation of the whole batch (s). The benchmark is ALCF's; its A100
machine, Polaris, has 4 NVIDIA A100-SXM4-40GB per node on NVLink (ALCF Polaris documentation,
"Polaris system overview"), so the system is 1, 2 or 4 GPUs of ``dgx-a100-40gb``.

Prediction, with nothing fitted on these rows: the model captured on fake tensors, split with
tensor parallelism, simulated as a serving engine runs it (CUDA graphs, fused elementwise kernels,
a paged KV cache: ``--cuda-graphs --fuse --kv-cache paged``),

    latency = T_prefill(B, L) + L x T_decode(B, context 1.5 L)

(a decode step's time grows linearly with the context, so the mid-context step stands for the
average of the L steps). Rows whose weights and full KV cache (context 2 L) do not fit in 90 %
of the GPUs' memory are left out with the reason: the engine then runs fewer sequences at a time,
which this model of one batch does not describe.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd

from sim.cluster.memory import HEADROOM, memory_report
from sim.cluster.simulate import simulate_parallel
from sim.cluster.system import load_system
from sim.cluster.workload import ParallelPlan
from sim.fusion import fuse_elementwise
from sim.retarget import paged_kv_cache

__all__ = ["tp_inference", "MODELS"]

MODELS = {"meta-llama/Llama-2-7b-hf": "llama-2-7b", "meta-llama/Meta-Llama-3-8B": "llama-3-8b",
          "mistralai/Mistral-7B-v0.1": "mistral-7b", "meta-llama/Llama-2-70b-hf": "llama-2-70b",
          "meta-llama/Meta-Llama-3-70B": "llama-3-70b"}
SYSTEM = "dgx-a100-40gb"


def tp_inference(root: Path, *, models: list[str] | None = None,
                 max_batch: int | None = None, max_length: int | None = None) -> pd.DataFrame:
    """One row per measured TensorRT-LLM tensor-parallel run (module doc): ``predicted_s``,
    ``measured_s``, or ``excluded`` with the reason."""
    df = pd.read_csv(root / "llm_inference_bench" / "TP_PP_Results.csv")
    df = df[(df["Hardware"] == "Nvidia A100 GPU") & (df["Framework"] == "TensorRT-LLM")
            & df["Parallelism Type"].isin(["Tensor Parallelism", "TP"])
            & df["Model"].isin(list(MODELS))]
    if models is not None:
        df = df[df["Model"].map(MODELS).isin(models)]
    if max_batch is not None:
        df = df[df["Batch Size"] <= max_batch]
    if max_length is not None:
        df = df[df["Input Output Length"] <= max_length]
    system = load_system(SYSTEM)
    rows = []
    for model, tp, batch, length, seconds in zip(
            df["Model"].map(MODELS), df["Num of Hardware"], df["Batch Size"],
            df["Input Output Length"], df["Latency"], strict=True):
        row = {"model": model, "tp": int(tp), "batch": int(batch), "length": int(length),
               "measured_s": float(seconds)}
        rows.append(row | _predict(system, model, int(tp), int(batch), int(length)))
    return pd.DataFrame(rows)


def _predict(system, model: str, tp: int, batch: int, length: int) -> dict:
    from workloads.parallel import parallelize

    plan = ParallelPlan(tp=tp)
    decode = parallelize(_serving_trace(model, "decode", batch, length + length // 2), plan)
    capacity = system.device.main_memory.capacity_bytes
    need = max(m.parts["weights"] + m.parts["kv_cache"] * 2 / 1.5
               for m in memory_report(decode, capacity))
    if need > HEADROOM * capacity:
        return {"predicted_s": float("nan"),
                "excluded": f"weights + KV cache at context {2 * length} need "
                            f"{need / 1e9:.1f} GB per GPU of {capacity / 1e9:.0f} GB"}
    prefill = parallelize(_serving_trace(model, "prefill", batch, length), plan)
    t_prefill = simulate_parallel(prefill, system, records=False, cuda_graphs=True).total_s
    t_decode = simulate_parallel(decode, system, records=False, cuda_graphs=True).total_s
    return {"predicted_s": t_prefill + length * t_decode, "prefill_s": t_prefill,
            "decode_step_s": t_decode, "excluded": ""}


@functools.lru_cache(maxsize=8)
def _serving_trace(model: str, phase: str, batch: int, tokens: int):
    """fp16, fake tensors; a decode step at context ``tokens``, a prefill of ``tokens``; fused
    elementwise chains and a paged KV cache, as a serving engine runs them."""
    from workloads import capture_model

    if phase == "decode":
        trace = capture_model(model, phase="decode", batch=batch, context=tokens, dtype="fp16",
                              mode="fake")
        trace = paged_kv_cache(trace)
    else:
        trace = capture_model(model, phase="prefill", batch=batch, seq=tokens, dtype="fp16",
                              mode="fake")
    return fuse_elementwise(trace)
