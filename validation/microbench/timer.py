"""Robust wall-clock timing of many small kernels on a shared, noisy machine.

What is measured: the time of one eager call of a benchmark callable (Python -> dispatcher ->
kernel -> return), i.e. what the op costs inside a model's forward, host dispatch included.

Method (per point): warm-up calls until ``warmup_s`` has passed (first-touch, allocator and
oneDNN primitive caches), an estimate t_est of one call, then samples of ``block`` back-to-back
calls each, ``block = ceil(block_target_s / t_est)``, so that the timer's own ~50 ns vanish and a
sample of a 1 us op is not a single timer tick. Samples of all points are **interleaved**: each
round visits every point once in a fresh random order, so a burst of load on the shared second
core (see ``/work/shared/notes/capture.md``) spreads over all points instead of biasing a block
of them. The other tenant of the shared cores also slows memory-bound kernels through the shared
L3 and DRAM, so a **sentinel** (a fixed small GEMM and an 8 MiB copy, :data:`SENTINEL_EVERY`
points apart) is timed between groups of samples; a group whose sentinel ran more than
:data:`DISTURBED_ABOVE` x the sentinel's lower quartile is marked disturbed and its samples are
dropped (a point keeps at least its :data:`MIN_SAMPLES` least disturbed samples). A point's time
is the median of its kept samples; its noise the robust relative spread
``IQR / (1.349 * median)`` (a normal's sigma over its mean). The garbage collector is off while
timing.

The first call of each block is also timed apart (``first_s``; ``rest_s``: the block's other
calls, per call). Since every other point ran between two blocks of a point, that call finds
its code, library state and data evicted: it is the point's *cold* call, the rest its warm
ones. In the block's mean (what ``validation.cpu_fit`` fits) a cold call's excess and the warm
cost trade off; measured apart, the excess of a small GEMM's cold call was 22-58 us here
(2026-11-29, 40 points of the GEMM families), as when timed alone after 64 MiB of unrelated
reads (20-67 us). ``validation.cpu_cold_calls`` sets it beside the model's.

On a CUDA device the same loop times each block with CUDA events around it (``elapsed_time``
after a synchronize), so host-side jitter does not enter kernel times; not exercised on the CPU
machines this project runs on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from sim.trace_stream import no_cyclic_gc

__all__ = ["Timing", "TimingPlan", "QUICK", "FULL", "time_interleaved", "noise",
           "SENTINEL_EVERY", "DISTURBED_ABOVE", "MIN_SAMPLES"]

#: IQR of a normal distribution in units of its standard deviation.
_IQR_PER_SIGMA = 1.349
SENTINEL_EVERY = 16  # points timed between two sentinel runs
DISTURBED_ABOVE = 1.15  # a sentinel this much slower than its lower quartile: disturbed
MIN_SAMPLES = 5


@dataclass(frozen=True)
class TimingPlan:
    """How hard to time: rounds of interleaved samples and the length of a sample block (s)."""

    rounds: int
    block_target_s: float
    warmup_s: float
    max_block: int = 4096


QUICK = TimingPlan(rounds=11, block_target_s=150e-6, warmup_s=2e-3)
FULL = TimingPlan(rounds=25, block_target_s=200e-6, warmup_s=5e-3)


@dataclass(frozen=True)
class Timing:
    """The kept samples of one point (seconds per call), their summary, and how many of its
    samples were dropped as disturbed."""

    samples_s: tuple[float, ...]
    block: int
    dropped: int = 0
    #: The first call of each kept sample, seconds (empty when not timed apart: CUDA).
    first_s: tuple[float, ...] = ()

    @property
    def median_s(self) -> float:
        return float(np.median(self.samples_s))

    @property
    def first_median_s(self) -> float | None:
        """Median time of a block's first (cold) call; None when not timed apart or the block
        is one call (then the first call is the sample)."""
        return float(np.median(self.first_s)) if self.first_s and self.block > 1 else None

    @property
    def rest_median_s(self) -> float | None:
        """Median time per call of a block's other calls (None as :attr:`first_median_s`)."""
        if not self.first_s or self.block < 2:
            return None
        rest = [(s * self.block - f) / (self.block - 1)
                for s, f in zip(self.samples_s, self.first_s, strict=True)]
        return float(np.median(rest))

    @property
    def noise(self) -> float:
        return noise(self.samples_s)


def noise(samples_s: Sequence[float]) -> float:
    """Robust relative spread of samples: IQR / (1.349 * median) (0 for one sample)."""
    values = np.asarray(samples_s, dtype=float)
    if values.size < 2:
        return 0.0
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    return float((q75 - q25) / (_IQR_PER_SIGMA * q50)) if q50 > 0 else 0.0


def time_interleaved(calls: Sequence[Callable[[], object]], plan: TimingPlan, *, seed: int = 0,
                     cuda: bool = False, sentinel: Callable[[], object] | None = None,
                     on_round: Callable[[int], None] | None = None) -> list[Timing]:
    """Time every callable of ``calls`` (see the module doc); one :class:`Timing` each."""
    clock = _cuda_block_time if cuda else _cpu_block_time
    with no_cyclic_gc():
        blocks = [_block_size(call, plan, clock) for call in calls]
        sentinel_block = _block_size(sentinel, plan, clock) if sentinel else 1
        # per point: (seconds per call, sentinel, first call's seconds or None)
        samples: list[list[tuple[float, float, float | None]]] = [[] for _ in calls]
        rng = np.random.default_rng(seed)
        for r in range(plan.rounds):
            for n, i in enumerate(rng.permutation(len(calls))):
                if n % SENTINEL_EVERY == 0:
                    state = clock(sentinel, sentinel_block)[0] if sentinel else 0.0
                total, first = clock(calls[i], blocks[i])
                samples[i].append((total / blocks[i], state, first))
            if on_round is not None:
                on_round(r + 1)
    states = [sample[1] for point in samples for sample in point]
    limit = DISTURBED_ABOVE * float(np.percentile(states, 25)) if sentinel else np.inf
    return [_kept(s, b, limit) for s, b in zip(samples, blocks, strict=True)]


def _kept(samples: list[tuple], block: int, limit: float) -> Timing:
    """The samples ``(seconds per call, sentinel[, first call's seconds])`` whose sentinel
    stayed within ``limit`` (module doc); at least :data:`MIN_SAMPLES`, the least disturbed
    ones."""
    states = np.array([sample[1] for sample in samples])
    calm = states <= limit
    if calm.sum() < min(MIN_SAMPLES, len(samples)):
        calm = np.zeros(len(samples), dtype=bool)
        calm[np.argsort(states, kind="stable")[:MIN_SAMPLES]] = True
    kept = [sample for sample, keep in zip(samples, calm, strict=True) if keep]
    firsts = tuple(sample[2] for sample in kept if len(sample) > 2 and sample[2] is not None)
    return Timing(tuple(sample[0] for sample in kept), block, dropped=len(samples) - len(kept),
                  first_s=firsts if len(firsts) == len(kept) else ())


def _block_size(call: Callable[[], object], plan: TimingPlan,
                clock: Callable[[Callable[[], object], int], float]) -> int:
    """Warm ``call`` up for ``plan.warmup_s`` and size its sample blocks from the last calls."""
    start, count, last = time.perf_counter(), 0, 0.0
    while count < 3 or time.perf_counter() - start < plan.warmup_s:
        last = clock(call, 1)[0]
        count += 1
    return max(1, min(plan.max_block, math.ceil(plan.block_target_s / max(last, 1e-9))))


def _cpu_block_time(call: Callable[[], object], block: int) -> tuple[float, float]:
    """Seconds of ``block`` back-to-back calls, and of the first of them."""
    start = time.perf_counter_ns()
    call()
    first = time.perf_counter_ns()
    for _ in range(block - 1):
        call()
    return (time.perf_counter_ns() - start) * 1e-9, (first - start) * 1e-9


def _cuda_block_time(call: Callable[[], object],
                     block: int) -> tuple[float, None]:  # pragma: no cover
    import torch

    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    begin.record()
    for _ in range(block):
        call()
    end.record()
    torch.cuda.synchronize()
    return begin.elapsed_time(end) * 1e-3, None  # ms -> s; the first call not apart


