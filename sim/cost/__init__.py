"""The cost model (pure): what each op costs on a device, term by term, and which bound applies."""

from sim.cost.gpu_params import A100_FIT, GpuParams
from sim.cost.model import (
    COST_MODELS,
    CalibratedCostModel,
    CostModel,
    MeasuredCostModel,
    RooflineCostModel,
    cost_ops,
)
from sim.cost.opcost import BOUNDS, OpCost

__all__ = [
    "A100_FIT",
    "BOUNDS",
    "CalibratedCostModel",
    "COST_MODELS",
    "CostModel",
    "GpuParams",
    "MeasuredCostModel",
    "OpCost",
    "RooflineCostModel",
    "cost_ops",
]
