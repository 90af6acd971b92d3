"""Benchmark of the simulator against SimPy's own speed (``tksim bench``).

Three rates, each the median of ``repeats`` runs measured in the same process:

- **raw**: SimPy events per second of an empty loop (one process yielding ``timeout(1)``): the
  fastest any SimPy model can go on this machine right now.
- **engine**: ops per second of tksim's simulator on a synthetic transformer-like trace, costs
  precomputed (host thread + stream processes, critical-path bookkeeping).
- **end to end**: ops per second of :func:`sim.simulator.simulate`, i.e. cost model + engine +
  critical path + per-op records.

The ratio engine / raw says how much the engine adds over SimPy itself (target >= 0.25: at most
about four SimPy events' worth of work per op). Ratios are robust to a busy shared machine; the
absolute rates are not.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import simpy

from sim.cost import RooflineCostModel, cost_ops
from sim.hardware import HardwareSpec
from sim.simulator import _Engine, simulate
from sim.trace import Op, Trace

__all__ = ["BenchResult", "run_bench", "synthetic_trace"]


@dataclass(frozen=True)
class BenchResult:
    num_ops: int
    raw_events_per_s: float
    engine_ops_per_s: float
    end_to_end_ops_per_s: float
    repeats: int

    @property
    def ratio(self) -> float:
        return self.engine_ops_per_s / self.raw_events_per_s

    def to_dict(self) -> dict[str, float]:
        return {"num_ops": self.num_ops, "raw_events_per_s": self.raw_events_per_s,
                "engine_ops_per_s": self.engine_ops_per_s,
                "end_to_end_ops_per_s": self.end_to_end_ops_per_s,
                "engine_to_raw_ratio": self.ratio, "repeats": self.repeats}


def synthetic_trace(num_ops: int, *, dtype: str = "bf16") -> Trace:
    """A chain of layer-like op groups (GEMM, norm, elementwise, view) with data dependencies."""
    pattern = (
        ("gemm", {"m": 2048, "n": 4096, "k": 4096}),
        ("norm", {}),
        ("elementwise", {}),
        ("view", {}),
    )
    ops = []
    for i in range(num_ops):
        category, attrs = pattern[i % len(pattern)]
        flops = 2.0 * 2048 * 4096 * 4096 if category == "gemm" else 8.0 * 2048 * 4096
        ops.append(Op(id=i, name=category, category=category, dtype=dtype, flops=flops,
                      bytes_read=2 * 2048 * 4096 * 2.0, bytes_written=2048 * 4096 * 2.0,
                      deps=(i - 1,) if i else (), attrs=attrs, module=f"layers.{i // 64}"))
    return Trace(ops=tuple(ops), meta={"model": "synthetic"})


def _raw_rate(num_events: int) -> float:
    env = simpy.Environment()

    def loop():
        for _ in range(num_events):
            yield env.timeout(1)

    env.process(loop())
    start = time.perf_counter()
    env.run()
    return num_events / (time.perf_counter() - start)


def _rate(run: Callable[[], object], count: int) -> float:
    start = time.perf_counter()
    run()
    return count / (time.perf_counter() - start)


def run_bench(spec: HardwareSpec, *, num_ops: int = 50_000, repeats: int = 5) -> BenchResult:
    trace = synthetic_trace(num_ops)
    costs = cost_ops(trace.ops, spec, RooflineCostModel())
    raw, engine, e2e = [], [], []
    for _ in range(repeats):  # interleaved, so a noisy neighbour hits all three alike
        raw.append(_raw_rate(num_ops))
        engine.append(_rate(lambda: _Engine(trace.ops, costs, not spec.asynchronous).run(),
                            num_ops))
        e2e.append(_rate(lambda: simulate(trace, spec), num_ops))
    return BenchResult(num_ops=num_ops, raw_events_per_s=statistics.median(raw),
                       engine_ops_per_s=statistics.median(engine),
                       end_to_end_ops_per_s=statistics.median(e2e), repeats=repeats)
