"""Cost models: map an op and a device spec to an :class:`OpCost`, purely (no clock, no SimPy).

:class:`RooflineCostModel` is tksim's physical model. Per op:

    t_pre  = dispatch_s + num_kernels * launch_s          (host: framework + kernel launches)
    t_calc = sum over its kernels of t_k                 (device: sub-model per category)
    t_post = num_kernels * completion_s + [sync] sync_s  (completion, host synchronization)

A view (or an op on a host scalar) launches no kernel: it costs host dispatch only. An op of
``num_kernels`` kernels splits its work evenly over them, so each pays its own latency floor.

On a CPU spec calibrated by ``validation.calibrate_cpu`` (``spec.cpu_calibration``),
:class:`CalibratedCostModel` prices ops with the CPU sub-model (:mod:`sim.cost.cpu`), and
:func:`cost_ops` gives it the trace's weight residency (and, for a trace with a host profile, each
op's host time: :mod:`sim.cost.cpu_host`); GPUs and datasheet CPU specs are priced
as above. On a GPU with the GPU sub-models, :func:`cost_ops` also gives the memory-bound ops the
bytes their producers left in L2 (:mod:`sim.cost.l2_reuse`) and the step's working set, whose
level serves their other bytes.

:class:`MeasuredCostModel` replays the durations a trace measured (``measured_s``) as t_calc: the
"same machine" baseline, and the way to run hand-written scenarios with given times.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Sequence
from typing import Protocol

from sim.cost.attention import attention_time
from sim.cost.collective import collective_time
from sim.cost.cpu import Residency, cpu_op_cost, host_calls, trace_residency
from sim.cost.cpu_host import has_profile, profiled_host_s
from sim.cost.gemm import gemm_shape, gemm_time
from sim.cost.gpu_params import A100_FIT, CLOCK_MODES, GpuParams
from sim.cost.l2_reuse import Reuse, l2_reuse
from sim.cost.opcost import OpCost
from sim.cost.roofline import KernelTime, kernel_time
from sim.cost.vector import vector_time
from sim.cpu_calibration import CpuCalibration
from sim.errors import InputError
from sim.hardware import HardwareSpec
from sim.trace import Op

__all__ = ["CostModel", "RooflineCostModel", "CalibratedCostModel", "MeasuredCostModel",
           "cost_ops", "COST_MODELS"]

DATASHEET = "datasheet"  # params: the spec's own estimates (GpuParams.from_spec)
_GEMM_KEYS = ("m", "n", "k")
_ATTENTION_KEYS = ("b", "h_q", "s_q", "s_k", "d")


class CostModel(Protocol):
    """Anything that prices an op on a device."""

    name: str

    def cost(self, op: Op, spec: HardwareSpec) -> OpCost: ...


class RooflineCostModel:
    """Physical per-category model (see module doc).

    ``params=None`` (the default) prices every op with the plain per-spec roofline: tiles and
    waves, bytes over bandwidth, a latency floor, all at the spec's ``efficiency`` fractions. On a
    GPU, ``params`` selects the GPU sub-models (CTA tiles and waves with per-tile and per-kernel
    overheads, FlashAttention with softmax on the SFUs, memory ramps, ring / NVLS collectives):
    a :class:`GpuParams`, or ``"datasheet"`` for the spec's own estimates with no fitted overheads.
    :class:`CalibratedCostModel` passes the A100-fitted transferable set. ``clock_mode`` is
    ``default`` (power-managed boost) or ``locked`` (application clocks pinned at the maximum);
    see :mod:`sim.cost.gpu_params`.
    """

    name = "roofline"
    cpu_submodel = False  # price ops on a calibrated CPU spec with sim.cost.cpu

    def __init__(self, params: GpuParams | str | None = None, clock_mode: str = "default"):
        if clock_mode not in CLOCK_MODES:
            raise InputError(f"unknown clock mode {clock_mode!r}; one of {', '.join(CLOCK_MODES)}",
                             field="clock_mode")
        self.params = params
        self.clock_mode = clock_mode
        self.residency = Residency()
        self.reuse = Reuse({}, 0.0)

    def with_residency(self, residency: Residency) -> RooflineCostModel:
        """This model with the weight residency of a trace (the CPU sub-model's context)."""
        model = copy.copy(self)
        model.residency = residency
        return model

    def with_reuse(self, reuse: Reuse) -> RooflineCostModel:
        """This model with a trace's L2 reuse (the GPU memory-bound sub-model's context)."""
        model = copy.copy(self)
        model.reuse = reuse
        return model

    def cost(self, op: Op, spec: HardwareSpec) -> OpCost:
        if self.cpu_submodel and spec.kind == "cpu" and spec.cpu_calibration is not None:
            return cpu_op_cost(op, spec.cpu_calibration, self.residency)
        host = spec.host
        if op.category == "view":
            return OpCost(host.dispatch_s, 0.0, 0.0, "host", {"reason": "view: no kernel"})
        if op.attrs.get("host_scalar"):  # e.g. AdamW's step count: a Python scalar on the host
            return OpCost(host.dispatch_s, 0.0, 0.0, "host", {"reason": "host scalar: no kernel"})
        kernels = max(op.num_kernels, 1)
        kernel = self.kernel(op, spec, kernels)
        t_pre = host.dispatch_s + kernels * host.launch_s
        t_post = kernels * host.completion_s + (host.sync_s if op.sync else 0.0)
        detail = {**kernel.detail, "num_kernels": kernels, "t_k_s": kernel.t_s}
        return OpCost(t_pre, kernels * kernel.t_s, t_post, kernel.bound, detail)

    def kernel(self, op: Op, spec: HardwareSpec, kernels: int) -> KernelTime:
        """Time of one of the op's ``kernels`` equal kernels."""
        attrs, dtype, params = op.attrs, op.dtype, self.params_for(spec)
        if op.category == "gemm" and all(k in attrs for k in _GEMM_KEYS):
            b, m, n, k = gemm_shape(attrs)
            return gemm_time(spec, b=b, m=m, n=n, k=k, dtype=dtype,
                             bytes_moved=op.bytes_total / kernels or None, params=params,
                             clock_mode=self.clock_mode)
        if op.category == "attention" and all(k in attrs for k in _ATTENTION_KEYS):
            return attention_time(spec, attrs, dtype, params=params, clock_mode=self.clock_mode)
        if op.category in ("collective", "send_recv"):
            return _collective(op, spec, params)
        flops, nbytes = op.flops / kernels, op.bytes_total / kernels
        if op.category in ("gemm", "attention"):  # no shape attrs: roofline on the matrix engine
            rate = spec.compute.matrix_peak(dtype) * spec.efficiency.matrix
            return kernel_time(spec, flops=flops, flops_per_s=rate, bytes_moved=nbytes)
        hot, working_set = self.reuse.of(op)
        cold_reads = max(op.bytes_read - hot, 0.0) / kernels if working_set else None
        return vector_time(spec, flops=flops, bytes_moved=nbytes, dtype=dtype, params=params,
                           hot_bytes=hot / kernels, resident_bytes=working_set or None,
                           cold_read_bytes=cold_reads)

    def params_for(self, spec: HardwareSpec) -> GpuParams | None:
        """The GPU parameters used on ``spec``; None: the plain roofline (CPUs, ``params=None``)."""
        if spec.kind != "gpu" or self.params is None:
            return None
        return GpuParams.from_spec(spec) if self.params == DATASHEET else self.params


class CalibratedCostModel(RooflineCostModel):
    """:class:`RooflineCostModel` with the transferable parameters fitted on A100 (A100_FIT);
    on a calibrated CPU spec, the CPU sub-model (:mod:`sim.cost.cpu`)."""

    name = "calibrated"
    cpu_submodel = True

    def __init__(self, clock_mode: str = "default"):
        super().__init__(params=A100_FIT, clock_mode=clock_mode)


def _collective(op: Op, spec: HardwareSpec, params: GpuParams | None) -> KernelTime:
    attrs = op.attrs
    kind = attrs.get("kind", "sendrecv" if op.category == "send_recv" else "allreduce")
    size = float(attrs.get("bytes", op.bytes_read))
    return collective_time(spec, kind=kind, size_bytes=size,
                           num_ranks=int(attrs.get("num_ranks", 2)), params=params,
                           dtype=op.dtype)


class MeasuredCostModel:
    """Replays ``measured_s`` as t_calc and ``measured_host_s`` (the host time measured before
    the op, in a real capture timed from inside the dispatcher: ``workloads.op_timer``) as t_pre,
    0 where the trace has none: no model, only the measurement."""

    name = "measured"

    def cost(self, op: Op, spec: HardwareSpec) -> OpCost:
        if op.measured_s is None:
            raise InputError(f"op {op.id} ({op.name}) has no measured_s; replay needs a trace "
                             "captured with --real", field="measured_s")
        return OpCost(op.measured_host_s or 0.0, op.measured_s, 0.0, "measured",
                      {"measured_s": op.measured_s})


COST_MODELS = {"roofline": RooflineCostModel, "calibrated": CalibratedCostModel,
               "measured": MeasuredCostModel}


def cost_ops(ops: Sequence[Op], spec: HardwareSpec, model: CostModel) -> list[OpCost]:
    """Cost every op; identical ops (same kind, shapes, work) are priced once."""
    if isinstance(model, MeasuredCostModel):
        return [model.cost(op, spec) for op in ops]
    if getattr(model, "cpu_submodel", False) and spec.cpu_calibration is not None:
        model = model.with_residency(trace_residency(ops))  # a CPU step re-reads its weights
    reuse = Reuse({}, 0.0)
    if isinstance(model, RooflineCostModel) and model.params_for(spec) is not None:
        reuse = l2_reuse(ops, spec)  # what each memory-bound kernel finds in L2
        model = model.with_reuse(reuse)
    cache: dict[tuple, OpCost] = {}
    costs = []
    for op in ops:
        key = (op.name, op.category, op.dtype, op.flops, op.bytes_read, op.bytes_written,
               op.num_kernels, op.sync, json.dumps(op.attrs, sort_keys=True, default=str),
               reuse.hits.get(op.id, 0.0))
        cost = cache.get(key)
        if cost is None:
            cost = cache[key] = model.cost(op, spec)
        costs.append(cost)
    cal = spec.cpu_calibration
    if (getattr(model, "cpu_submodel", False) and cal is not None
            and cal.host_profile is not None and has_profile(ops)):
        costs = _profiled_host(ops, costs, cal)
    return costs


def _profiled_host(ops: Sequence[Op], costs: list[OpCost],
                   cal: CpuCalibration) -> list[OpCost]:
    """``costs`` with each t_pre from the trace's host profile (:mod:`sim.cost.cpu_host`)
    instead of the ``framework`` term."""
    profile = cal.host_profile
    host = profiled_host_s(ops, [c.t_calc_s for c in costs], [host_calls(op) for op in ops],
                           cold_factor=profile.cold_factor, cold_time_s=profile.cold_time_s,
                           call_overlap_s=profile.call_overlap_s)
    return [dataclasses.replace(c, t_pre_s=max(0.0, cal.dispatch_s + h))
            for c, h in zip(costs, host, strict=True)]


