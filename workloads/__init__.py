"""Workloads: op-level traces captured from real PyTorch runs (``import workloads``).

``capture_model("gpt2-tiny", batch=1, seq=64)`` builds a built-in model (HF config, random weights)
and records its prefill forward on this CPU as a :class:`sim.trace.Trace`; ``capture_module`` does
the same for any ``nn.Module``. The trace format is documented in ``docs/trace-format.md``.
"""

from workloads.capture import capture_model, capture_module
from workloads.models import MODELS, build_model, model_config
from workloads.op_costs import causal_pairs, op_cost
from workloads.recorder import OpRecorder

__all__ = [
    "MODELS",
    "OpRecorder",
    "build_model",
    "capture_model",
    "capture_module",
    "causal_pairs",
    "model_config",
    "op_cost",
]
