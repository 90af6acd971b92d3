"""Validation: comparing tksim's predictions with measurements of the same work.

The error metrics every report uses (:mod:`validation.metrics`); the GPU validation against
public measurements (``run_gpu_validation`` from :mod:`validation.gpu_validation`,
``write_gpu_report`` from :mod:`validation.gpu_report`); the CPU calibration and validation on
this machine (``calibrate_cpu`` from :mod:`validation.cpu_calibrate`, ``validate_cpu`` from
:mod:`validation.cpu_validation`, ``write_cpu_report`` from :mod:`validation.cpu_report`,
``compare_cpu`` from :mod:`validation.cpu_compare`). All but the metrics are imported lazily,
so that ``import validation`` stays light.
"""

from importlib import import_module

from validation.metrics import ErrorSummary, ape, summarize_errors

__all__ = ["ErrorSummary", "ape", "summarize_errors", "run_gpu_validation", "write_gpu_report",
           "calibrate_cpu", "validate_cpu", "write_cpu_report", "compare_cpu"]

_LAZY = {"run_gpu_validation": "validation.gpu_validation",
         "write_gpu_report": "validation.gpu_report",
         "calibrate_cpu": "validation.cpu_calibrate",
         "validate_cpu": "validation.cpu_validation",
         "write_cpu_report": "validation.cpu_report",
         "compare_cpu": "validation.cpu_compare"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'validation' has no attribute {name!r}")
