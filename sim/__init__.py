"""tksim's engine: hardware specs, traces, the cost model, the SimPy simulator and reports.

    from sim import load_spec, read_trace, simulate
    result = simulate(read_trace("trace.json.gz"), load_spec("h100"))
    result.total_s, result.ops  # T and the per-op t_pre / t_calc / t_post records

``sim`` never imports torch; capture lives in ``workloads``.
"""

from sim.cost import MeasuredCostModel, OpCost, RooflineCostModel
from sim.errors import InputError
from sim.hardware import HardwareSpec
from sim.result import SimResult
from sim.simulator import simulate
from sim.spec_library import list_specs, load_spec
from sim.trace import Op, TensorMeta, Trace, read_trace, write_trace

__all__ = [
    "HardwareSpec",
    "InputError",
    "MeasuredCostModel",
    "Op",
    "OpCost",
    "RooflineCostModel",
    "SimResult",
    "TensorMeta",
    "Trace",
    "list_specs",
    "load_spec",
    "read_trace",
    "simulate",
    "write_trace",
]
