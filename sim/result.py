"""The outcome of one simulation: per-op timing records and the critical path.

:class:`SimResult` is what the simulator hands to reports. ``ops`` is a pandas DataFrame with one
row per op in program order and these columns (times in seconds from the start of the run):

==============  ===============================================================================
id, name        op id and aten/op name from the trace
category        gemm, attention, elementwise, ... (``sim.trace.CATEGORIES``)
module, phase   module path (``model.layers.3.mlp.down_proj``) and forward/backward/optimizer
layer           layer index parsed from the module path (-1 when the op is in no layer)
stream, rank    device stream and rank the op ran on
host_start_s    when the host began the op's t_pre
issue_s         when the host finished t_pre and handed the op to the device
start_s, end_s  device execution interval (t_calc + t_post)
t_pre_s         host dispatch/launch time of the op
t_calc_s        device execution time (sum of its kernels' t_k)
t_post_s        completion time (sync, non-overlapped write-back)
t_s             t_pre + t_calc + t_post
bound           what limits t_calc: compute, memory, latency, host, measured, link
flops, bytes    work of the op (FLOP, bytes read + written)
waited_for      what the device start waited on: host, stream, dep, or start (t = 0)
critical        True if any of the op's terms lie on the critical path
crit_pre_s      the part of T that is this op's t_pre (0 or t_pre)
crit_calc_s     the part of T that is this op's t_calc
crit_post_s     the part of T that is this op's t_post
==============  ===============================================================================

Invariant: ``crit_pre_s + crit_calc_s + crit_post_s`` summed over all ops equals ``total_s``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

__all__ = ["SimResult", "COLUMNS"]

COLUMNS = (
    "id", "name", "category", "module", "phase", "layer", "stream", "rank",
    "host_start_s", "issue_s", "start_s", "end_s", "t_pre_s", "t_calc_s", "t_post_s", "t_s",
    "bound", "flops", "bytes", "waited_for", "critical", "crit_pre_s", "crit_calc_s",
    "crit_post_s",
)


@dataclass(frozen=True)
class SimResult:
    """Per-op records (see module doc), the makespan ``total_s`` and what was simulated."""

    ops: pd.DataFrame
    total_s: float
    hw: str
    hw_kind: str
    trace_meta: Mapping[str, Any] = field(default_factory=dict)
    peak_flops_per_s: float = 0.0
    peak_bytes_per_s: float = 0.0

    @property
    def num_ops(self) -> int:
        return len(self.ops)

    @property
    def regime(self) -> str:
        """host-bound if the critical path is mostly host t_pre, else device-bound."""
        pre = float(self.ops["crit_pre_s"].sum())
        return "host-bound" if pre > 0.5 * self.total_s else "device-bound"

