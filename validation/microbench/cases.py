"""A benchmark point: one PyTorch call, the tksim ops it issues, and its buffers for timing.

A :class:`Case` is a call (``run(**tensors)``) over tensors made by ``make(generator)``, with the
sweep coordinates that identify it (``shape``). :func:`prepare` turns it into a
:class:`Prepared` point:

- **ops**: the call is run once under ``workloads.recorder.OpRecorder``, so the point carries
  exactly the ``sim.trace.Op`` records (category, FLOPs, bytes, attrs, views included) that a
  captured trace of a model issuing that call would carry; the cost model predicts their sum.
- **rotation**: the call cycles over copies of its buffers where a cache would flatter the loop.
  The cost model serves an op's data from the innermost level that holds its working set W
  (:mod:`sim.cost.cpu`); a loop over one buffer set whose W just exceeds a cache level would
  still find part of it in that level. So the point cycles over ``ceil(2 C / W)`` full buffer
  sets, C the capacity of the largest cache level smaller than W, and every repetition misses
  that level. A **cold** case (a model whose weights exceed the last-level cache, e.g. decoding
  GPT-2 on this CPU) cycles over copies of its weight tensors only, with a pool of
  :data:`COLD_POOL_FACTOR` x the LLC however small its weights (up to
  :data:`MAX_COLD_COPIES`), so its weights stream from DRAM while its activations stay warm,
  as in a model's step. (Until 2026-11-29 night the cold pool too was capped at
  :data:`MAX_COPIES`: 68 of the suite's 140 cold points cycled over less than the 32 MiB L3,
  some over 0.5 MiB, and ran from the caches while the model priced them from main memory; a
  held-out fp32 gemv over 184 KB of weights took 16 us per call, priced 41.)

``reuse_bytes`` / ``weight_reuse_bytes`` are the bytes touched between two uses of the same
buffer (the LRU reuse distance), which the cost model takes as its residency context.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from sim.hardware import HardwareSpec
from sim.trace import Op
from workloads.recorder import OpRecorder

__all__ = ["Case", "Prepared", "prepare", "COLD_POOL_FACTOR", "MAX_COPIES", "MAX_COLD_COPIES"]

#: A cold case's weight pool spans this many last-level caches (LRU: a cyclic access pattern
#: longer than the cache misses on every access).
COLD_POOL_FACTOR = 4
#: Most buffer copies a point cycles over (bounds memory and set-up time).
MAX_COPIES = 64
#: Most weight copies a cold point cycles over: a pool of 4 x a 32 MiB LLC for weights of 2 KiB
#: and more (the sweeps' smallest cold weights are about 9 KiB).
MAX_COLD_COPIES = 2**16


@dataclass(frozen=True)
class Case:
    """A call to time: ``run(**make(generator))``; ``family`` and ``shape`` name the point.

    ``category`` is the op category it is reported under (``sim.trace.CATEGORIES``);
    ``weights`` the names of weight-like tensors (rotated when ``cold``); ``split`` says whether
    a fit may use it (``fit``) or not (``heldout``).
    """

    family: str
    category: str
    dtype: str
    shape: Mapping[str, Any]
    make: Callable[[torch.Generator], dict[str, torch.Tensor]]
    run: Callable[..., object]
    weights: tuple[str, ...] = ()
    cold: bool = False
    split: str = "fit"

    @property
    def key(self) -> str:
        coords = ",".join(f"{k}={v}" for k, v in sorted(self.shape.items()))
        return f"{self.family}/{self.dtype}{'/cold' if self.cold else ''}/{coords}"


@dataclass
class Prepared:
    """A case ready to time: a zero-argument call cycling over its buffers, and its ops."""

    case: Case
    ops: tuple[Op, ...]
    call: Callable[[], object]
    copies: int
    reuse_bytes: float
    weight_reuse_bytes: float
    buffers: list = field(default_factory=list, repr=False)  # keeps the copies alive

    @property
    def working_set_bytes(self) -> float:
        return sum(op.bytes_total for op in self.ops)


def record_ops(case: Case, tensors: Mapping[str, torch.Tensor]) -> tuple[Op, ...]:
    """The ops one call issues, as a captured trace would carry them (no measurement)."""
    with torch.no_grad(), OpRecorder() as recorder:
        case.run(**tensors)
    return tuple(op.__class__(**{**_fields(op), "measured_s": None}) for op in recorder.ops)


def _fields(op: Op) -> dict[str, Any]:
    return {name: getattr(op, name) for name in op.__slots__}


def prepare(case: Case, spec: HardwareSpec, seed: int, *, device: str = "cpu") -> Prepared:
    """Make the buffers of ``case`` (on ``device``), record its ops and build its rotating call
    (module doc)."""
    generator = torch.Generator().manual_seed(seed)

    def make() -> dict[str, torch.Tensor]:
        return {k: v.to(device) for k, v in case.make(generator).items()}

    base = make()
    ops = record_ops(case, base)
    work = max(sum(op.bytes_total for op in ops), 1.0)
    if case.cold:
        weight_bytes = sum(base[name].nbytes for name in case.weights)
        llc = spec.memory[-2].capacity_bytes
        copies = min(MAX_COLD_COPIES,
                     max(2, math.ceil(COLD_POOL_FACTOR * llc / weight_bytes)))
        sets = [base] + [{**base, **{n: base[n].clone() for n in case.weights}}
                         for _ in range(copies - 1)]
        reuse, weight_reuse = work, copies * work
    else:
        inner = max((lv.capacity_bytes for lv in spec.memory[:-1] if lv.capacity_bytes < work),
                    default=0.0)
        copies = min(MAX_COPIES, max(1, math.ceil(2 * inner / work)))
        sets = [base] + [make() for _ in range(copies - 1)]
        reuse = weight_reuse = copies * work
    calls = [_bind(case.run, s) for s in sets]
    return Prepared(case=case, ops=ops, call=_cycle(calls), copies=copies, reuse_bytes=reuse,
                    weight_reuse_bytes=weight_reuse, buffers=sets)


def _bind(run: Callable[..., object], tensors: Mapping[str, torch.Tensor]) -> Callable[[], object]:
    return lambda: run(**tensors)


def _cycle(calls: list[Callable[[], object]]) -> Callable[[], object]:
    """One call per invocation, round robin; the same wrapper for one copy or many, so every
    point pays the same Python overhead."""
    step = itertools.cycle(calls).__next__
    return lambda: step()()
