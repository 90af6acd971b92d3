"""Predict the rows of the GPU datasets with tksim's GPU sub-models, vectorized per group.

Rows (schema: :mod:`validation.datasets.common`) are grouped by spec, category, dtype and clock
mode, and each group goes through one call of the sub-model it belongs to (``sim.cost``:
:func:`gemm_times`, :func:`attention_times`, :func:`stream_op_times`, :func:`collective_times`),
so 400k rows take seconds. The prediction is made comparable with each row's timing scope:
``graph`` and ``kernel`` rows compare with t_calc (the device time of the op's kernels), ``event``
rows with t_calc + ``event_floor_s`` (the launch and CUDA-event overhead around one eager call).

``traffic`` maps a memory-bound op's name to its implementation's traffic factor: the bytes its
kernels really move over the single-pass minimum the adapter computes (an unfused RMSNorm in
PyTorch reads and writes its tensor several times). It is a property of the software, not of the
GPU: it is fitted on A100 and carried unchanged to the held-out GPUs that ran the same code.
``round_trips`` maps the same ops to the dependent DRAM round trips on their kernel's critical
path: per loop step (the row's ``row_steps``) of a kernel that runs one CTA per token and loops
over the hidden dimension, per call otherwise -- what sets the time of a few-token call; also a
property of the kernel, priced at each spec's DRAM latency. Rows in the ``kernel`` scope
(profiler durations) exclude the graph-node gap (:func:`~sim.cost.gpu_params.kernel_scope`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from sim.cost.attention import attention_times
from sim.cost.collective import collective_times
from sim.cost.gemm import gemm_times
from sim.cost.gpu_params import GpuParams, kernel_scope
from sim.cost.vector import stream_op_times
from sim.hardware import HardwareSpec
from sim.spec_library import load_spec

__all__ = ["DATASHEET", "predict", "params_for"]

DATASHEET = "datasheet"  # the spec files' own efficiency estimates, no fitted overheads


@lru_cache(maxsize=32)
def _spec(name: str) -> HardwareSpec:
    return load_spec(name)


def params_for(params: GpuParams | str, spec: HardwareSpec) -> GpuParams:
    """``params`` itself, or the spec's datasheet-only set for ``"datasheet"``."""
    return GpuParams.from_spec(spec) if params == DATASHEET else params


def predict(rows: pd.DataFrame, params: GpuParams | str,
            traffic: dict[str, float] | None = None,
            round_trips: dict[str, float] | None = None) -> np.ndarray:
    """Predicted seconds per row, in each row's timing scope (see module doc)."""
    traffic, round_trips = traffic or {}, round_trips or {}
    out = np.full(len(rows), np.nan)
    keys = ["spec", "category", "dtype", "clock_mode", "op", "kind", "scope"]
    for key, index in rows.groupby(keys, sort=False).indices.items():
        spec = _spec(key[0])
        group = rows.iloc[index]
        p = params_for(params, spec)
        if key[6] == "kernel":  # profiler kernel durations: no graph-node gap
            p = kernel_scope(p)
        t = _t_calc(spec, p, group, category=key[1], dtype=key[2], clock_mode=key[3],
                    traffic=traffic.get(key[4], 1.0), round_trips=round_trips.get(key[4], 0.0))
        out[index] = t + np.where(group["scope"].to_numpy() == "event", p.event_floor_s, 0.0)
    return out


def _t_calc(spec, p, g: pd.DataFrame, *, category: str, dtype: str, clock_mode: str,
            traffic: float, round_trips: float):
    col = {name: g[name].to_numpy() for name in g.columns}
    if category in ("gemm", "gemm_fp8"):
        resident = np.where(np.isnan(col["resident_bytes"]), np.nan, col["resident_bytes"])
        return gemm_times(spec, p, b=col["b"], m=col["m"], n=col["n"], k=col["k"], dtype=dtype,
                          clock_mode=clock_mode,
                          resident_bytes=None if np.isnan(resident).all() else resident)["t_s"]
    if category == "attention":
        return attention_times(spec, p, b=col["b"], h_q=col["h_q"], h_kv=col["h_kv"],
                               s_q=col["s_q"], s_k=col["s_k"], d=col["d"], causal=True,
                               dtype=dtype, clock_mode=clock_mode)["t_s"]
    if category == "memory":
        resident = col["resident_bytes"]
        steps = np.where(np.isnan(col["row_steps"]), 1.0, col["row_steps"])
        # an input the previous kernel wrote is an L2 hit when it fits (sim.cost.l2_reuse)
        fresh = col["fresh_bytes"]
        hot = np.where(fresh <= spec.memory[-2].capacity_bytes, fresh, 0.0)
        cold_reads = np.where(np.isnan(col["read_bytes"]), np.inf, col["read_bytes"] - hot)
        return stream_op_times(spec, p, nbytes=col["nbytes"] * traffic, flops=col["flops"],
                               dtype=dtype, round_trips=round_trips * steps, hot_bytes=hot,
                               cold_read_bytes=cold_reads,
                               resident_bytes=None if np.isnan(resident).any() else resident)["t_s"]
    if category == "collective":
        return collective_times(spec, p, kind=col["kind"][0], size_bytes=col["size_bytes"],
                                num_ranks=col["num_ranks"], dtype=dtype)["t_s"]
    raise ValueError(f"no sub-model for category {category!r}")
