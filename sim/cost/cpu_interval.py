"""Prediction intervals of the CPU sub-model, from its held-out residuals.

A calibrated CPU spec stores, per op category c, the 10th and 90th percentiles (q10_c, q90_c) of
measured / predicted over the calibration's held-out micro-benchmark points
(``cpu_calibration.intervals``; ``all`` pools every category). So:

- one op predicted at t_i lies in [q10_c t_i, q90_c t_i] with ~80 % probability
  (:func:`op_interval`; empirical quantiles of held-out errors, i.e. a split-conformal
  interval: Vovk, Gammerman & Shafer, "Algorithmic Learning in a Random World", 2005, ch. 2);
- a whole run: the part of T that category c's ops make, T_c (their critical-path t_pre +
  t_calc + t_post), carries one error for the whole category -- the ops of a category run the
  same kernels, so their errors are systematic, not independent: T_c in [q10_c T_c, q90_c T_c].
  Different categories' kernels err independently, so their half-widths
  h_c = T_c (q90_c - q10_c) / 2 add in quadrature around the sum of the midpoints
  m_c = T_c (q10_c + q90_c) / 2 (the root-sum-square of independent error sources, JCGM
  100:2008 "GUM", sec. 5.1.2, with unit sensitivities): [sum m_c - H, sum m_c + H],
  H = sqrt(sum_c h_c^2) (:func:`result_interval`). Full correlation within a category keeps the
  interval from shrinking as 1/sqrt(n) over thousands of ops, which held-out models would not
  bear out.

- the ``framework`` term (model code's Python per Python-level torch call, part of each op's
  t_pre: :mod:`sim.cost.cpu`) errs apart from any kernel: its interval (``intervals.framework``,
  measured / fitted per call over the calibration's captures of its framework models, each
  capture's wall against the kernels' T) scales the framework part of T as one more
  independent source. A spec without it (older) leaves that part in its ops' categories.
  For a trace with a host profile (``trace_meta.host_profile``), priced by
  :mod:`sim.cost.cpu_host`, the host part takes the host profile model's interval instead
  (``intervals.host_profile``: measured / predicted host time of the calibration's captures).

The machine's own drift between calibration and use (``validation.cpu_validation`` reports it)
is not covered.
"""

from __future__ import annotations

import math

from sim.cost.opcost import OpCost
from sim.cpu_calibration import CpuCalibration, Interval
from sim.errors import InputError
from sim.result import SimResult
from sim.trace import Op

__all__ = ["category_interval", "op_interval", "result_interval", "POOLED", "FRAMEWORK",
           "HOST_PROFILE"]

POOLED = "all"  # the interval of every held-out point, for categories without their own
FRAMEWORK = "framework"  # the interval of the framework term per call (not an op category)
HOST_PROFILE = "host_profile"  # the interval of a profiled step's host time (sim.cost.cpu_host)


def category_interval(cal: CpuCalibration | None, category: str) -> Interval:
    """The measured / predicted interval of ``category`` (else the pooled one)."""
    if cal is None or not cal.intervals:
        raise InputError("this spec carries no calibrated intervals: calibrate it with "
                         "`tksim calibrate --device cpu`", field="--hw")
    interval = cal.intervals.get(category) or cal.intervals.get(POOLED)
    if interval is None:
        raise InputError(f"no interval for category {category!r} and no pooled one",
                         field="cpu_calibration.intervals")
    return interval


def op_interval(op: Op, cost: OpCost, cal: CpuCalibration) -> tuple[float, float]:
    """(low, high) seconds around ``cost.total_s`` for ``op`` (module doc)."""
    interval = category_interval(cal, op.category)
    return cost.total_s * interval.low, cost.total_s * interval.high


def result_interval(result: SimResult, cal: CpuCalibration) -> tuple[float, float]:
    """(low, high) seconds around ``result.total_s`` (module doc)."""
    ops = result.ops
    profiled = (cal is not None and cal.host_profile is not None
                and result.trace_meta.get("host_profile") == "twin")
    host = cal.intervals.get(HOST_PROFILE if profiled else FRAMEWORK) if cal is not None else None
    # the host part of a critical t_pre: t_pre - dispatch (sim.cost.cpu, sim.cost.cpu_host)
    host_s = ((ops["t_pre_s"] - cal.dispatch_s).clip(lower=0.0) * (ops["crit_pre_s"] > 0)
              if host is not None else 0.0 * ops["crit_pre_s"])
    parts = (ops["crit_pre_s"] - host_s + ops["crit_calc_s"] + ops["crit_post_s"]).groupby(
        ops["category"]).sum()
    sources = [(part, category_interval(cal, str(category))) for category, part in parts.items()]
    if host is not None:
        sources.append((float(host_s.sum()), host))
    middle = half_sq = 0.0
    for part, interval in sources:
        middle += part * (interval.low + interval.high) / 2
        half_sq += (part * (interval.high - interval.low) / 2) ** 2
    half = math.sqrt(half_sq)
    return max(0.0, middle - half), middle + half
