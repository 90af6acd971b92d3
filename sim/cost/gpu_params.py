"""Parameters of the GPU cost sub-models that calibration fits, in units that transfer across GPUs.

Every parameter is a fraction of a datasheet peak, a count of SM cycles (all fixed per-kernel
device costs), of dependent DRAM round trips or of operations, or a host-side / link time that
does not scale with a GPU's size; none is a per-GPU time. That is what lets tksim fit them on
one GPU (the A100 rows of the public datasets, ``validation/gpu_fit.py``) and predict a GPU it has
never seen from its spec file alone.

Two sets exist:

- :meth:`GpuParams.from_spec` -- *datasheet-only*: the spec file's own ``efficiency`` estimates,
  no fixed overheads, the spec link latency; what the spec alone predicts (uncalibrated).
- :data:`A100_FIT` -- fitted on A100 rows only (see its provenance below); used by
  :class:`~sim.cost.model.CalibratedCostModel` for every GPU.

Clock modes (``CLOCK_MODES``): ``locked`` means application clocks pinned at the maximum (the
AIConfigurator collector), ``default`` means the driver's power-managed boost (most measurements).
Tensor work runs at the rated tensor clock in both; in ``default`` mode a sustained dense load
settles at ``default_clock_fraction`` of it (fitted on A100, where both modes were measured on the
same shapes).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from sim.hardware import HardwareSpec

__all__ = ["CLOCK_MODES", "GpuParams", "A100_FIT", "FIT_PARAMETERS", "tensor_rate_scale",
           "cycle_clock_hz", "kernel_overhead_s", "kernel_scope", "operand_stream_efficiency"]

CLOCK_MODES = ("default", "locked")


@dataclass(frozen=True)
class GpuParams:
    """Transferable GPU model parameters (see the module doc for their units and provenance).

    GEMM: ``matrix_efficiency`` (fraction of the tensor peak a CTA's main loop sustains),
    ``tile_overhead_cycles`` (prologue fill + epilogue of one CTA tile, SM cycles),
    ``iteration_cycles`` (the shortest main-loop iteration: wait for a pipeline stage, barrier,
    fragment loads and MMA issue, SM cycles; it binds small tiles),
    ``kernel_overhead_cycles`` (SM cycles every kernel pays on the device: the graph node's
    launch, CTA rasterization, the tail's drain and flush),
    ``inflight_bytes_per_unit`` (bytes a multistage cp.async tensor-core kernel keeps in flight
    per SM; see :func:`operand_stream_efficiency`).
    Memory: ``stream_efficiency`` (fraction of the DRAM/L2 peak a kernel with enough bytes in
    flight streams at), ``vector_efficiency`` (fraction of the vector FLOP peak).
    Attention: ``softmax_ops_per_pair`` (FP32 operations per (query, key) pair besides the exp),
    ``attention_cta_round_trips`` (dependent DRAM round trips a CTA waits before streaming),
    ``attention_overhead_cycles`` (SM cycles per attention op: the backend's few kernels --
    KV-cache write, attention, split-KV combine -- and their launch ramps).
    Collectives: ``link_efficiency`` (bus-bandwidth fraction of a long pipelined ring),
    ``link_efficiency_drop`` (pipeline fill and drain in ring steps: a collective of s steps
    sustains link_efficiency * s / (s + drop)),
    ``collective_latency_s`` (fixed launch and sync), ``collective_latency_scale`` (factor on
    NCCL's own per-protocol latency model, see :mod:`sim.cost.collective`).
    Timing scope: ``default_clock_fraction`` (see module doc), ``event_floor_s`` (what CUDA events
    around one eager call add: launch and event overheads), ``graph_gap_cycles`` (the part of
    ``kernel_overhead_cycles`` that is the gap between consecutive kernels of a CUDA graph: a
    profiler's kernel durations exclude it).
    """

    matrix_efficiency: float
    tile_overhead_cycles: float
    iteration_cycles: float
    kernel_overhead_cycles: float
    inflight_bytes_per_unit: float
    stream_efficiency: float
    vector_efficiency: float
    softmax_ops_per_pair: float
    attention_cta_round_trips: float
    attention_overhead_cycles: float
    link_efficiency: float
    link_efficiency_drop: float
    collective_latency_s: float
    collective_latency_scale: float
    default_clock_fraction: float
    event_floor_s: float
    graph_gap_cycles: float

    @classmethod
    def from_spec(cls, spec: HardwareSpec) -> GpuParams:
        """Datasheet-only parameters: the spec's efficiency estimates, no fitted overheads."""
        e = spec.efficiency
        return cls(
            matrix_efficiency=e.matrix,
            tile_overhead_cycles=0.0,
            iteration_cycles=0.0,
            kernel_overhead_cycles=0.0,
            inflight_bytes_per_unit=float("inf"),
            stream_efficiency=e.memory,
            vector_efficiency=e.vector,
            softmax_ops_per_pair=0.0,
            attention_cta_round_trips=0.0,
            attention_overhead_cycles=0.0,
            link_efficiency=1.0,
            link_efficiency_drop=0.0,
            collective_latency_s=0.0,
            collective_latency_scale=1.0,
            default_clock_fraction=1.0,
            event_floor_s=spec.host.launch_s,
            graph_gap_cycles=0.0,
        )

    def replace(self, **changes: float) -> GpuParams:
        return dataclasses.replace(self, **changes)


def tensor_rate_scale(params: GpuParams, clock_mode: str) -> float:
    """Factor on the datasheet matrix peak for the clock mode (see the module doc)."""
    return 1.0 if clock_mode == "locked" else params.default_clock_fraction


def kernel_overhead_s(spec: HardwareSpec, params: GpuParams, clock_mode: str = "default") -> float:
    """Seconds of ``kernel_overhead_cycles`` at the SM clock of ``clock_mode``."""
    return params.kernel_overhead_cycles / cycle_clock_hz(spec, clock_mode)


def kernel_scope(params: GpuParams) -> GpuParams:
    """``params`` for kernel durations as a profiler reports them: without the graph-node gap."""
    return params.replace(kernel_overhead_cycles=max(
        0.0, params.kernel_overhead_cycles - params.graph_gap_cycles))


def cycle_clock_hz(spec: HardwareSpec, clock_mode: str) -> float:
    """The SM clock that cycle-counted costs run at: the max clock when locked, else the boost."""
    clocks = spec.compute.clocks
    if clock_mode == "locked" and clocks is not None:
        return clocks.max_hz
    return spec.compute.clock_hz


def operand_stream_efficiency(
    spec: HardwareSpec, params: GpuParams, active_units: float | np.ndarray | None = None
) -> float | np.ndarray:
    """Fraction of the DRAM peak a GEMM or attention kernel streams its operands at.

    Little's law: a memory system of bandwidth B and latency L needs B * L bytes in flight. Each
    SM that holds a CTA (``active_units``, default all) keeps some bytes in flight: persistent TMA
    kernels (``Compute.gemm_persistent``, sm90+) as much as their shared memory holds (the first
    memory level's capacity per SM), multistage cp.async kernels ``inflight_bytes_per_unit``. The
    kernel reaches ``min(stream_efficiency, active * inflight / (L * B))`` of the peak (Little,
    Operations Research 9(3), 1961; NVIDIA Hopper Tuning Guide, "Tensor Memory Accelerator").
    """
    c, main = spec.compute, spec.main_memory
    active = c.num_units if active_units is None else active_units
    if c.gemm_persistent:
        inflight = spec.memory[0].capacity_bytes / c.num_units
    else:
        inflight = params.inflight_bytes_per_unit
    limit = active * inflight / (main.latency_s * spec.memory_bandwidth(main))
    return np.minimum(params.stream_efficiency, limit)


#: Names of the parameters, in the order the fit reports them.
FIT_PARAMETERS = tuple(f.name for f in dataclasses.fields(GpuParams))

#: Fitted on A100 rows only -- AIConfigurator A100-SXM4 GEMM / attention / NCCL, Vidur A100 Llama
#: layers, NeuSight A100 PCIe fp32 ops -- by ``python -m validation.gpu_fit`` (2026-11-30, stages
#: in that module); ``tests/test_gpu_validation.py`` checks that a re-fit reproduces these values.
A100_FIT = GpuParams(
    matrix_efficiency=0.8644,
    tile_overhead_cycles=2267,
    iteration_cycles=211.5,
    kernel_overhead_cycles=2878,
    inflight_bytes_per_unit=6098,
    stream_efficiency=0.8676,
    vector_efficiency=0.7,
    softmax_ops_per_pair=13.94,
    attention_cta_round_trips=8.964,
    attention_overhead_cycles=15800,
    link_efficiency=0.733,
    link_efficiency_drop=0.6265,
    collective_latency_s=2.108e-07,
    collective_latency_scale=1.479,
    default_clock_fraction=0.9468,
    event_floor_s=1.963e-05,
    graph_gap_cycles=1400,
)
