"""Validation: comparing tksim's predictions with measurements of the same work.

The error metrics every report uses (:mod:`validation.metrics`); the GPU validation against
public measurements (``run_gpu_validation`` from :mod:`validation.gpu_validation`,
``write_gpu_report`` from :mod:`validation.gpu_report`), imported lazily so that
``import validation`` stays light.
"""

from validation.metrics import ErrorSummary, ape, summarize_errors

__all__ = ["ErrorSummary", "ape", "summarize_errors", "run_gpu_validation", "write_gpu_report"]


def __getattr__(name: str):
    if name == "run_gpu_validation":
        from validation.gpu_validation import run_gpu_validation

        return run_gpu_validation
    if name == "write_gpu_report":
        from validation.gpu_report import write_gpu_report

        return write_gpu_report
    raise AttributeError(f"module 'validation' has no attribute {name!r}")
