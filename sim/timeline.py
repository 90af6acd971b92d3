"""Per-op records of a simulation, as the DataFrame described in :mod:`sim.result`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd

from sim.cost import OpCost
from sim.critical_path import CriticalPath
from sim.result import COLUMNS
from sim.trace import Op

if TYPE_CHECKING:
    from sim.simulator import Timeline

__all__ = ["build_records", "layer_of"]

# HF naming: model.layers.3 (Llama), transformer.h.3 (GPT-2), encoder.layer.3 (BERT), blocks.3
_LAYER = re.compile(r"(?:^|\.)(?:layers|h|layer|blocks)\.(\d+)(?:\.|$)")


def layer_of(module: str) -> int:
    """Layer index in a module path (``model.layers.3.mlp`` -> 3), or -1 outside any layer."""
    match = _LAYER.search(module)
    return int(match.group(1)) if match else -1


def build_records(
    ops: Sequence[Op], costs: Sequence[OpCost], tl: Timeline, path: CriticalPath
) -> pd.DataFrame:
    layers: dict[str, int] = {}
    columns = {
        "id": [op.id for op in ops],
        "name": [op.name for op in ops],
        "category": [op.category for op in ops],
        "module": [op.module for op in ops],
        "phase": [op.phase for op in ops],
        "layer": [layers.setdefault(op.module, layer_of(op.module)) for op in ops],
        "stream": [op.stream for op in ops],
        "rank": [op.rank for op in ops],
        "host_start_s": tl.host_start,
        "issue_s": tl.issue,
        "start_s": tl.start,
        "end_s": tl.end,
        "t_pre_s": [c.t_pre_s for c in costs],
        "t_calc_s": [c.t_calc_s for c in costs],
        "t_post_s": [c.t_post_s for c in costs],
        "t_s": [c.t_pre_s + c.t_calc_s + c.t_post_s for c in costs],
        "bound": [c.bound for c in costs],
        "flops": [op.flops for op in ops],
        "bytes": [op.bytes_read + op.bytes_written for op in ops],
        "waited_for": tl.waited_for,
        "critical": [p > 0 or c > 0 or q > 0 for p, c, q in
                     zip(path.pre_s, path.calc_s, path.post_s, strict=True)],
        "crit_pre_s": path.pre_s,
        "crit_calc_s": path.calc_s,
        "crit_post_s": path.post_s,
    }
    return pd.DataFrame(columns, columns=list(COLUMNS))
