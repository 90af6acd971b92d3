"""Fit the transferable GPU parameters on A100 rows only, in stages of a few parameters each.

Protocol: only rows whose ``split`` is ``fit`` (the A100 family: SXM4 80GB, PCIe 80GB / 40GB) are
used; every other GPU is predicted from its spec file with the fitted values unchanged. Each stage
minimizes a robust loss (``soft_l1``, scale 0.1, i.e. about 10 %) of the log ratio
predicted / measured with ``scipy.optimize.least_squares``, within physical bounds, starting from
the round a-priori values of :data:`START` (so that a re-fit does not depend on earlier results):

1. ``stream``: stream_efficiency and event_floor_s on the A100 single-kernel memory-bound ops of
   NeuSight (elementwise / LayerNorm / softmax, CUDA events; its README documents the event
   floor). LLMCompass, whose timing method is not documented, is evaluated but not fitted.
2. ``gemm``: matrix_efficiency, tile_overhead_cycles, iteration_cycles, kernel_overhead_cycles,
   inflight_bytes_per_unit on the AIConfigurator A100 bf16 GEMMs (clock-locked, CUDA graph).
3. ``attention``: softmax_ops_per_pair, attention_cta_round_trips, attention_overhead_cycles on the
   AIConfigurator A100 prefill and decode attention (the MMAs run at the stage-2 efficiency).
4. ``default_clock``: default_clock_fraction and graph_gap_cycles on the Vidur A100 GEMMs
   (default clocks, profiler kernel durations, which exclude the gap between graph nodes that
   AIConfigurator's graph replay includes) -- shapes AIConfigurator timed with locked clocks.
5. ``traffic``: the traffic factor of each Vidur op implementation but the (single-pass) add
   (RMSNorm, RoPE, SiLU-and-mul, embedding) and the dependent round trips of all six -- per loop
   step of sarathi-serve's one-CTA-per-token kernels, per call for the PyTorch add and embedding
   (see :mod:`validation.gpu_predict`) -- on their A100 rows.
6. ``collective``: link_efficiency, link_efficiency_drop, collective_latency_s,
   collective_latency_scale on the AIConfigurator A100 NCCL rows (2/4/8 GPUs).

``python -m validation.gpu_fit`` prints the fitted values (the source of ``A100_FIT``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from sim.cost.gpu_params import GpuParams
from validation.datasets import load_rows
from validation.gpu_predict import predict

__all__ = ["START", "STAGES", "TRAFFIC_OPS", "Stage", "Fit", "fit_a100", "main"]

#: Where every fit starts: round values from the literature, not from any fit. cuBLAS reaches
#: ~80 % of the dense tensor peak and STREAM-like kernels ~85 % of DRAM peak (spec-file
#: estimates); ~1000 cycles of pipeline fill per tile and ~100 per main-loop iteration; ~3000
#: cycles (~2 us) per kernel, ~7000 per attention op (a few kernels), no graph gap, and ~5 us of
#: CUDA-event floor (NeuSight README: 6-9 us on nodes without kernels); NCCL's own latency model
#: (scale 1).
START = GpuParams(
    matrix_efficiency=0.8, tile_overhead_cycles=1000.0, iteration_cycles=100.0,
    kernel_overhead_cycles=3000.0,
    inflight_bytes_per_unit=8192.0, stream_efficiency=0.85, vector_efficiency=0.7,
    softmax_ops_per_pair=8.0, attention_cta_round_trips=4.0, attention_overhead_cycles=7000.0,
    link_efficiency=0.7, link_efficiency_drop=0.3, collective_latency_s=2e-6,
    collective_latency_scale=1.0, default_clock_fraction=0.9, event_floor_s=5e-6,
    graph_gap_cycles=0.0,
)

#: Vidur op implementations whose traffic factor is fitted (the others are single-pass).
TRAFFIC_OPS = ("input_layernorm", "post_attention_layernorm", "attn_rope", "mlp_act", "emb")


@dataclass(frozen=True)
class Fit:
    """The result of :func:`fit_a100`: GPU parameters and, per memory-bound op implementation,
    its traffic factor and dependent round trips (:mod:`validation.gpu_predict`)."""

    params: GpuParams
    traffic: dict[str, float]
    round_trips: dict[str, float]


@dataclass(frozen=True)
class Stage:
    """One fit stage: the rows it sees and the parameters it moves, with bounds."""

    name: str
    select: str  # a DataFrame.query over the fit rows
    bounds: dict[str, tuple[float, float]]


STAGES = (
    Stage("stream", "category == 'memory' and dataset == 'neusight'",
          {"stream_efficiency": (0.3, 1.0), "event_floor_s": (0.0, 5e-5)}),
    Stage("gemm", "dataset == 'aiconfigurator' and category == 'gemm'",
          {"matrix_efficiency": (0.3, 1.0), "tile_overhead_cycles": (0.0, 2e4),
           "iteration_cycles": (0.0, 2000.0), "kernel_overhead_cycles": (0.0, 2e4),
           "inflight_bytes_per_unit": (256.0, 65536.0)}),
    Stage("attention", "dataset == 'aiconfigurator' and category == 'attention'",
          {"softmax_ops_per_pair": (0.0, 64.0), "attention_cta_round_trips": (0.0, 64.0),
           "attention_overhead_cycles": (0.0, 7e4)}),
    Stage("default_clock", "dataset == 'vidur' and category == 'gemm'",
          {"default_clock_fraction": (0.5, 1.0), "graph_gap_cycles": (0.0, 2e4)}),
    Stage("traffic", "dataset == 'vidur' and category == 'memory'",
          {**{f"traffic:{op}": (1.0, 20.0) for op in TRAFFIC_OPS},
           **{f"trips:{op}": (0.0, 64.0) for op in (*TRAFFIC_OPS, "add")}}),
    Stage("collective", "dataset == 'aiconfigurator' and category == 'collective'",
          {"link_efficiency": (0.1, 1.0), "link_efficiency_drop": (0.0, 4.0),
           "collective_latency_s": (0.0, 1e-4), "collective_latency_scale": (0.1, 10.0)}),
)


def fit_a100(rows: pd.DataFrame, start: GpuParams = START) -> Fit:
    """The parameters fitted stage by stage on ``rows[split == 'fit']`` (see module doc)."""
    fit_rows = rows[rows["split"] == "fit"]
    fit = Fit(start, {op: 1.0 for op in TRAFFIC_OPS}, {op: 0.0 for op in (*TRAFFIC_OPS, "add")})
    for stage in STAGES:
        selected = fit_rows.query(stage.select)
        if len(selected):
            fit = _fit_stage(selected, fit, stage)
    return fit


def _apply(fit: Fit, values: dict[str, float]) -> Fit:
    def named(prefix: str) -> dict[str, float]:
        return {k.split(":", 1)[1]: v for k, v in values.items() if k.startswith(prefix)}

    params = fit.params.replace(**{k: v for k, v in values.items() if ":" not in k})
    return Fit(params, {**fit.traffic, **named("traffic:")},
               {**fit.round_trips, **named("trips:")})


def _current(fit: Fit, name: str) -> float:
    if ":" in name:
        prefix, op = name.split(":", 1)
        return (fit.traffic if prefix == "traffic" else fit.round_trips)[op]
    return getattr(fit.params, name)


def _fit_stage(rows: pd.DataFrame, fit: Fit, stage: Stage) -> Fit:
    names = list(stage.bounds)
    low = np.array([stage.bounds[n][0] for n in names])
    high = np.array([stage.bounds[n][1] for n in names])
    scale = np.maximum(np.abs(high), 1e-12)  # optimize in [0, 1]-ish units
    measured = rows["measured_s"].to_numpy()

    def residuals(z: np.ndarray) -> np.ndarray:
        trial = _apply(fit, dict(zip(names, z * scale, strict=True)))
        return np.log(predict(rows, trial.params, trial.traffic, trial.round_trips) / measured)

    start = np.clip([_current(fit, n) for n in names], low, high) / scale
    result = least_squares(residuals, start, bounds=(low / scale, high / scale),
                           loss="soft_l1", f_scale=0.1, x_scale="jac")
    return _apply(fit, dict(zip(names, result.x * scale, strict=True)))


def main(argv: list[str] | None = None) -> None:
    """Print the A100 fit as a ``GpuParams(...)`` literal."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    fit = fit_a100(load_rows("all", args.data_dir))
    fields = ",\n".join(f"    {k}={float(v):.4g}" for k, v in vars(fit.params).items())
    print(f"A100_FIT = GpuParams(\n{fields},\n)")
    print("traffic factors:", {k: round(v, 3) for k, v in fit.traffic.items()})
    print("round trips:", {k: round(v, 2) for k, v in fit.round_trips.items()})


if __name__ == "__main__":
    main()
