"""Machine-readable summary of a simulation (``tksim simulate --json``).

Keys (seconds unless named otherwise):

- ``total_s``: T, the simulated makespan; ``t_pre_s + t_calc_s + t_post_s == total_s``: the
  critical-path contribution of each term.
- ``work``: the sum of each term over all ops (on or off the critical path) and ``overlap_s``.
- ``num_ops``, ``hw``, ``hw_kind``, ``regime`` (host-bound / device-bound), ``trace`` (its meta).
- ``categories``: per category ``num_ops``, ``t_pre_s``, ``t_calc_s``, ``t_post_s`` (work),
  ``contribution_s`` and ``share_of_T``; likewise ``layers`` and ``phases``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from sim.files import write_atomic
from sim.report.tables import by_group, decomposition
from sim.result import SimResult

__all__ = ["summary", "write_summary"]

_GROUP_FIELDS = ("num_ops", "t_pre_s", "t_calc_s", "t_post_s", "t_s", "contribution_s",
                 "share_of_T", "flops", "bytes")


def summary(result: SimResult) -> dict[str, Any]:
    terms = decomposition(result).set_index("term")
    work = {f"{t}_s": float(terms.loc[t, "work_s"]) for t in ("t_pre", "t_calc", "t_post")}
    work["sum_s"] = float(terms.loc["T", "work_s"])
    work["overlap_s"] = max(0.0, work["sum_s"] - result.total_s)
    return {
        "hw": result.hw,
        "hw_kind": result.hw_kind,
        "num_ops": result.num_ops,
        "total_s": result.total_s,
        "t_pre_s": float(terms.loc["t_pre", "contribution_s"]),
        "t_calc_s": float(terms.loc["t_calc", "contribution_s"]),
        "t_post_s": float(terms.loc["t_post", "contribution_s"]),
        "regime": result.regime,
        "work": work,
        "categories": _groups(result, "category"),
        "layers": _groups(result, "layer"),
        "phases": _groups(result, "phase"),
        "trace": _jsonable(dict(result.trace_meta)),
    }


def write_summary(result: SimResult, path: str | Path) -> Path:
    text = json.dumps(summary(result), indent=2, sort_keys=True)
    return write_atomic(path, text + "\n")


def _groups(result: SimResult, key: str) -> dict[str, dict[str, float]]:
    table = by_group(result, key)
    out = {}
    for row in table.to_dict("records"):
        out[str(row[key])] = {f: _number(row[f]) for f in _GROUP_FIELDS}
    return out


def _number(value: Any) -> float | int:
    number = float(value)
    if number.is_integer() and abs(number) < 2**53:
        return int(number)
    return number if math.isfinite(number) else 0.0


def _jsonable(meta: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(meta, default=str))
