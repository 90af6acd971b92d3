"""Prediction error metrics, as defined in DESIGN.md ("What validated means here").

APE = |predicted - measured| / measured per sample; a summary gives its median, mean and p90, and
the bias (median of the signed relative error: > 0 means tksim predicts too slow).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ape", "ErrorSummary", "summarize_errors"]


def ape(predicted: Sequence[float], measured: Sequence[float]) -> np.ndarray:
    """Absolute percentage errors (as fractions); measured values must be > 0."""
    pred, meas = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    if pred.shape != meas.shape:
        raise ValueError(f"{pred.shape} predictions for {meas.shape} measurements")
    if np.any(meas <= 0):
        raise ValueError("measured values must be > 0")
    return np.abs(pred - meas) / meas


@dataclass(frozen=True)
class ErrorSummary:
    count: int
    median_ape: float
    mean_ape: float
    p90_ape: float
    bias: float

    def to_dict(self) -> dict[str, float]:
        return {"count": self.count, "median_ape": self.median_ape, "mean_ape": self.mean_ape,
                "p90_ape": self.p90_ape, "bias": self.bias}


def summarize_errors(predicted: Sequence[float], measured: Sequence[float]) -> ErrorSummary:
    errors = ape(predicted, measured)
    if errors.size == 0:
        raise ValueError("no samples to summarize")
    signed = (np.asarray(predicted, float) - np.asarray(measured, float)) / np.asarray(measured)
    return ErrorSummary(
        count=int(errors.size),
        median_ape=float(np.median(errors)),
        mean_ape=float(np.mean(errors)),
        p90_ape=float(np.percentile(errors, 90)),
        bias=float(np.median(signed)),
    )
