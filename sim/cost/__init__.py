"""The cost model (pure): what each op costs on a device, term by term, and which bound applies."""

from sim.cost.model import COST_MODELS, CostModel, MeasuredCostModel, RooflineCostModel, cost_ops
from sim.cost.opcost import BOUNDS, OpCost

__all__ = [
    "BOUNDS",
    "COST_MODELS",
    "CostModel",
    "MeasuredCostModel",
    "OpCost",
    "RooflineCostModel",
    "cost_ops",
]
