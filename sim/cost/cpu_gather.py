"""An embedding's row gather on a CPU: which bytes miss the hardware prefetcher, and what they
cost (part of the streaming formula of :mod:`sim.cost.cpu`).

PyTorch's CPU embedding is ``index_select`` over the table's rows: for each index it copies one
row, at a random offset of the table (measured here 2026-11-29, gathers of 2-13 MiB ran 2-3x
slower than a stream of their bytes from the same level). n indices drawn uniformly from V rows
touch V (1 - (1 - 1/V)^n) distinct rows; a repeated index finds its row in cache (chosen
2026-11-29 over a penalty on all of the op's bytes on the fit split of four calibrations, whose
embedding fit-split p90 it lowered from 18-29 % to 16-23 %). The first bytes of
each distinct row miss, as the prefetcher does not run across rows; once a row has run
``gather_ramp`` bytes, the prefetcher streams the rest of it. So an embedding pays, on top of
streaming its bytes,

    penalty = distinct rows x min(row bytes, gather_ramp) x (1 / gather_fraction - 1) / bw(level)

and pays it *after* its row loop, not overlapped with it: the copy of a row waits on the row's
misses (the per-row work and the misses add; the rest of the op's traffic overlaps its work as
any stream's does).

Chosen on the fit split of the suite of 2026-11-29 15:39 UTC (80 embedding points of 120),
refitted 2026-11-29 18:25; the committed spec, fitted on the median of three suites, came out at
the same 4 KiB. Priced before as all of a distinct row's
bytes at ``gather_fraction`` inside the max of bytes and work, the fit put 6.6-7.3 ns on each
row (measured: about 4 ns per 128-byte row of a table in cache), and over-predicted gathers of
long rows: 6 KiB rows of a 10 MiB table, 436 us measured, 631 predicted. Summed after the row
loop, the stream stage's fit-split loss went 462.1 -> 461.8 and the row time to 3.7 ns; with
the ramp, 500 / 461 / 447 / 443 / 450 / 458 / 462 at 1 / 2 / 3 / 4 / 6 / 8 / 12 KiB, row time
3.3 ns, gather fraction 0.23. Held-out results: ``docs/cpu-validation.md``.
"""

from __future__ import annotations

import math

import numpy as np

from sim.trace import Op
from sim.units import DTYPE_BYTES

__all__ = ["gathered_rows", "gather_seconds"]


def gathered_rows(op: Op, ramp_bytes: float = math.inf) -> tuple[float, float]:
    """(bytes of the distinct table rows that miss the prefetcher: each row's first
    ``ramp_bytes``, bytes of the repeated rows) of an embedding's forward gather; (0, 0) for
    other ops and a backward (a scatter-add)."""
    a = op.attrs
    if op.category != "embedding" or a.get("backward") or not {"vocab", "d"} <= a.keys():
        return 0.0, 0.0
    n, vocab = float(a.get("num_indices", 0)), float(a["vocab"])
    if n < 1 or vocab < 1:
        return 0.0, 0.0
    distinct = vocab * -math.expm1(n * math.log1p(-1.0 / vocab)) if vocab > 1 else 1.0
    row_bytes = float(a["d"]) * DTYPE_BYTES.get(op.dtype, 4)
    return distinct * min(row_bytes, ramp_bytes), (n - distinct) * row_bytes


def gather_seconds(gather_bytes, bandwidth, gather_fraction):
    """Seconds a gather's missing bytes take past streaming them at ``bandwidth``
    (numpy-broadcasting)."""
    return np.asarray(gather_bytes) * (1.0 / gather_fraction - 1.0) / bandwidth
