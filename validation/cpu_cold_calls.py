"""The cold first call of a micro-benchmark block, measured apart and as the model prices it.

The suite interleaves its points, so each sample block's first call finds its code, library
state and data evicted (``validation.cpu_fit.COLD``); the timer times that call apart from the
block's others (``first_s``, ``rest_s``: :mod:`validation.microbench.timer`). The fit sees only
the block's mean, in which a cold call's excess and the warm cost trade off.
:func:`cold_excess` sets the measured excess (first call less a later one) beside the excess
the calibrated model predicts for the same call (its ``COLD`` pricing less its pricing of the
block's other calls), per category and dtype: how much of ``cold_call`` is measured, and how
much the fit put there to explain the means.

Measured 2026-11-29 (two calibrations, 17:20 and 17:28 UTC; median over the fit points): a
cold call's excess was 34 us for fp32 GEMMs (the committed spec prices 48 us), 82-83 us for
bf16 (126 us), 53-61 us for fp32 attention (27 us). Fitting the first and the later calls as
two observations (fp32 ``mm`` ``cold_call`` then 22 us instead of 35-41) left the held-out
GEMM p90 and the held-out models' errors no better in two paired validations
(docs/cpu-validation.md), so the fit keeps the block means and this stays a diagnostic.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from sim.hardware import HardwareSpec
from validation.cpu_fit import Point, predict_points

__all__ = ["CATEGORIES", "cold_excess", "cold_sentence"]

#: Categories whose model has a cold-call term.
CATEGORIES = ("gemm", "attention")


def cold_excess(points: Sequence[Point], first_s: Sequence[float | None],
                rest_s: Sequence[float | None], spec: HardwareSpec) -> dict[str, tuple]:
    """Per ``category dtype`` (:data:`CATEGORIES`, fit split, blocks of two calls or more,
    both times known): (points, median measured excess, median predicted excess), seconds."""
    chosen = [(p, f, r) for p, f, r in zip(points, first_s, rest_s, strict=True)
              if p.split == "fit" and p.kind in CATEGORIES and not p.kernel_only
              and f is not None and r is not None and np.isfinite(f) and np.isfinite(r)
              and 0 < p.cold_share < 1]
    if not chosen:
        return {}
    first = [dataclasses.replace(p, cold_share=1.0, evicted_share=0.0) for p, _, _ in chosen]
    rest = [dataclasses.replace(p, cold_share=0.0,
                                evicted_share=p.evicted_share / (1.0 - p.cold_share))
            for p, _, _ in chosen]
    predicted = predict_points(first, spec) - predict_points(rest, spec)
    groups: dict[str, list[tuple[float, float]]] = {}
    for (p, f, r), excess in zip(chosen, predicted, strict=True):
        groups.setdefault(f"{p.kind} {p.ops[-1].dtype}", []).append((f - r, float(excess)))
    return {key: (len(pairs), float(np.median([m for m, _ in pairs])),
                  float(np.median([q for _, q in pairs])))
            for key, pairs in sorted(groups.items())}


def cold_sentence(points: Sequence[Point], first_s, rest_s, spec: HardwareSpec) -> str:
    """A provenance sentence of :func:`cold_excess` (empty when nothing was timed apart)."""
    found = cold_excess(points, first_s, rest_s, spec)
    if not found:
        return ""
    parts = [f"{key} {n} pts: measured {measured * 1e6:.1f} us, model {model * 1e6:.1f} us"
             for key, (n, measured, model) in found.items()]
    return (" A block's first (cold) call, timed apart, less its other calls (median): "
            + "; ".join(parts) + ".")
