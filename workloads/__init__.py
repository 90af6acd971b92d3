"""Workloads: op-level traces captured from PyTorch runs (``import workloads``).

``capture_model("llama-2-7b", phase="train", mode="fake")`` builds a built-in model (HF config,
random weights; or any HF ``config.json`` with ``hf_config=``) and records one step of a phase
(prefill, decode, train) as a :class:`sim.trace.Trace`, on this CPU (``mode="real"``, timed) or on
fake tensors (``mode="fake"``, any size, nothing allocated); ``capture_module`` does the same for
any ``nn.Module``. The trace format is documented in ``docs/trace-format.md``, capture in
``docs/capture.md``.
"""

from workloads.capture import capture_model, capture_module
from workloads.fake import fake_mode
from workloads.models import (
    MODEL_ALIASES,
    MODELS,
    build_model,
    config_from_file,
    model_config,
)
from workloads.moe import MoeRouting, tokens_per_expert
from workloads.op_costs import causal_pairs, op_cost
from workloads.recorder import OpRecorder

__all__ = [
    "MODELS",
    "MODEL_ALIASES",
    "MoeRouting",
    "OpRecorder",
    "build_model",
    "capture_model",
    "capture_module",
    "causal_pairs",
    "config_from_file",
    "fake_mode",
    "model_config",
    "op_cost",
    "tokens_per_expert",
]
