"""Real captures of a model taken in a given state of this shared machine.

The other tenant of the two shared cores moves a model step's wall time by 20-30 % for minutes at
a time, and the suite's sentinel (:func:`validation.microbench.suite.sentinel_time`: a small GEMM
and an 8 MiB copy) sees it. Measured here 2026-11-29, 970 mixtral-tiny prefill captures over
100 s, each between two sentinel timings: walls of 1960-2070 us while the sentinel read
312-323 us, 2430-2550 us while it read 367-396 us (correlation 0.89). A framework term fitted
to captures in a slow phase (2.37 us per call against 1.12 in a calm one, the same day) then
mis-prices every later model, and a held-out model captured in another phase than its spec's
calibration measures the neighbour, not the model.

So :func:`captures_in_state` brackets each capture with two sentinel timings and calls it *in
state* when their mean is within :data:`STATE_BAND` of a reference sentinel time (the suite's,
for a calibration's framework term; the calibration's, for a validation's held-out models). It
captures until ``count`` captures were in state or ``attempts`` were taken, and keeps the
``count`` nearest the reference state, in the order they were taken. Without a reference (a
spec that recorded none) every capture is in state and no sentinel runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sim.trace import Trace
from validation.microbench.suite import sentinel_time
from workloads.capture_env import torch_threads

__all__ = ["StateCapture", "captures_in_state", "STATE_BAND", "SENTINEL_CALLS"]

#: A capture is in the reference state when its sentinel is within this fraction of it. 10 %
#: until 2026-11-29 night: a validation (19:01 UTC) whose held-out captures read +8 to +10 %
#: kept them all, and their walls ran 13 % over the same models' in the runs before (gpt2
#: prefill 229-233 ms against 201-206, bert-tiny 8.5-8.8 ms against 7.4-7.8): the walls move
#: more than the sentinel (its 8 MiB copy sees main memory's load only in part).
STATE_BAND = 0.05
#: Sentinel calls per timing (its median); ~10 ms here.
SENTINEL_CALLS = 21


@dataclass(frozen=True)
class StateCapture:
    """One capture, its wall time (its fastest un-recorded step) and the machine's state then:
    the sentinel's mean of before and after over the reference, minus 1 (0: no reference)."""

    trace: Trace
    wall_s: float
    state: float


def captures_in_state(capture: Callable[[], Trace], count: int, reference_s: float | None,
                      attempts: int, *, threads: int = 1,
                      sentinel: Callable[[], float] | None = None) -> list[StateCapture]:
    """``count`` captures of ``capture()`` taken in the state of ``reference_s`` (module doc);
    the sentinel runs on ``threads`` torch threads, as the suite's did."""
    def time_sentinel() -> float:
        if sentinel is not None:
            return sentinel()
        with torch_threads(threads):
            return sentinel_time(calls=SENTINEL_CALLS)

    taken: list[StateCapture] = []
    while len(taken) < max(attempts, count):
        before = time_sentinel() if reference_s else 0.0
        trace = capture()
        after = time_sentinel() if reference_s else 0.0
        state = (before + after) / (2 * reference_s) - 1 if reference_s else 0.0
        taken.append(StateCapture(trace, float(trace.meta["unrecorded_wall_s"]), state))
        if sum(abs(c.state) <= STATE_BAND for c in taken) >= count:
            break
    nearest = sorted(range(len(taken)), key=lambda i: abs(taken[i].state))[:count]
    return [taken[i] for i in sorted(nearest)]
