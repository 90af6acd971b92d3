"""In-situ fit points: the GEMMs and attention of the calibration models' real steps.

The micro-benchmark suite times each point in blocks interleaved with every other point, so a
block's first call runs cold (:data:`validation.cpu_fit.COLD`). A GEMM's cold call pays a fixed
``cold_call`` that depends on what ran before it (measured here 2026-11-29: 141 x 64 x 384 took
152 us after a 64 MB streaming add, 68-69 us from its second call on; after one of 40 random
suite points, small GEMMs and SDPA paid 5-16 us more on average). With one time per point, the
cold share (1 / block) is confounded with the warm terms, and the fit put most of the cold cost
into the warm coefficients: in the calibrated model of 2026-11-29 a warm 64 x 128 x 128 fp32
``mm`` took 26.3 us, against 20.2-22.8 us inside llama-tiny's and mixtral-tiny's steps.

In a model's step every op runs warm, among the step's own ops. The real captures the
calibration takes anyway (``validation.cpu_calibrate.calibration_captures``: models the
validation never sees) time each op from inside the dispatcher (``measured_s``). Those of its
GEMMs and SDPA ops become fit points of their own (:func:`in_situ_rows`): each distinct op of a
model (same name, dtype and attributes) once, its kernel time the median over the model's
captures of the median over its repeats in a step of ``measured_s`` less the step's no-kernel
time (the median ``measured_s`` of its view ops: the dispatcher's own entry and exit and the
timer's cost per op, which the model prices in t_pre; 0.8 us in llama-tiny's prefill). They have
no cold calls, the residency of the step (weights re-read once per step), and are compared with
the op's t_calc alone (:attr:`validation.cpu_fit.Point.kernel_only`). Fitted together with the
suite's points, and weighing as much as all of them together (a few dozen against hundreds:
unweighted, they barely moved the fit under its robust loss), the in-situ points pin the warm
terms at a model's shapes and leave the suite's first-call excess to ``cold_call``.

The rows share the suite's columns (:data:`validation.microbench.suite.COLUMNS`; family
:data:`IN_SITU_FAMILY`, split ``fit``, ``block`` infinite), so the calibration's CSV keeps them
and ``--refit`` refits with them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from sim.cost.cpu import trace_residency
from sim.trace import Op
from validation.microbench.suite import COLUMNS, op_record

__all__ = ["IN_SITU_FAMILY", "IN_SITU_CATEGORIES", "MIN_KERNEL_S", "in_situ_rows",
           "kernel_times"]

#: ``family`` of the in-situ rows of a calibration table.
IN_SITU_FAMILY = "in_situ"
#: Categories whose ops become in-situ points: the ones the suite's cold first calls bias.
IN_SITU_CATEGORIES = ("gemm", "attention")
#: An op whose kernel time is below this (s) is left out: the timer's jitter (a few tenths of
#: a microsecond per op) would be most of it.
MIN_KERNEL_S = 1e-6


def kernel_times(ops: Sequence[Op]) -> dict[str, tuple[Op, float]]:
    """Per distinct GEMM or attention op of one captured step (its key: name, dtype and
    attributes), the op and its kernel time (s): the median ``measured_s`` of its occurrences
    less the median ``measured_s`` of the step's views (module doc). Empty without times."""
    views = [op.measured_s for op in ops if op.category == "view" and op.measured_s is not None]
    no_kernel = float(np.median(views)) if views else 0.0
    groups: dict[str, list[Op]] = {}
    for op in ops:
        if op.category in IN_SITU_CATEGORIES and op.measured_s is not None:
            groups.setdefault(_key(op), []).append(op)
    return {key: (group[0], float(np.median([op.measured_s for op in group])) - no_kernel)
            for key, group in groups.items()}


def in_situ_rows(captures: Mapping[tuple[str, str, int], Sequence]) -> pd.DataFrame:
    """Suite-table rows (module doc) of the GEMM and attention ops of ``captures``
    (``{(model, phase, seq): [capture with a .trace, ...]}``), each op of a model once, its
    kernel time the median over the model's captures; ops below :data:`MIN_KERNEL_S` left
    out. Only captures timed from inside the dispatcher count (``meta.op_timer``): the
    recorder's own times carry its Python (none without a C++ toolchain)."""
    rows = []
    for (name, phase, seq), kept in sorted(captures.items()):
        traces = [c.trace for c in kept if c.trace.meta.get("op_timer") == "dispatcher"]
        if not traces:
            continue
        residency = trace_residency(traces[0].ops)
        per_capture = [kernel_times(t.ops) for t in traces]
        for key in sorted(set().union(*per_capture)):
            found = [ops[key] for ops in per_capture if key in ops]  # (op, kernel s) each
            kernel_s = float(np.median([seconds for _, seconds in found]))
            if kernel_s < MIN_KERNEL_S:
                continue
            rows.append(_row(f"{IN_SITU_FAMILY}/{name}-{phase}-s{seq}/{key}", found[0][0],
                             kernel_s, len(found), residency.weight_reuse_bytes or 0.0))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _key(op: Op) -> str:
    return f"{op.name}.{op.dtype}:{json.dumps(dict(op.attrs), sort_keys=True, default=str)}"


def _row(key: str, op: Op, kernel_s: float, captures: int, weight_reuse: float) -> dict:
    return {
        "key": key, "family": IN_SITU_FAMILY, "category": op.category, "dtype": op.dtype,
        "cold": False, "shape": json.dumps(dict(op.attrs), sort_keys=True, default=str),
        "split": "fit", "measured_s": kernel_s, "noise": 0.0, "num_samples": captures,
        "dropped": 0, "block": float("inf"), "copies": 1, "reuse_bytes": 0.0,
        "weight_reuse_bytes": weight_reuse, "working_set_bytes": op.bytes_total,
        "flops": op.flops, "ops": json.dumps([op_record(op)], sort_keys=True)}
