"""Validation: comparing tksim's predictions with measurements of the same work.

So far: the error metrics every report uses (:mod:`validation.metrics`). Micro-benchmarks,
calibration and public-dataset adapters build on them.
"""

from validation.metrics import ErrorSummary, ape, summarize_errors

__all__ = ["ErrorSummary", "ape", "summarize_errors"]
