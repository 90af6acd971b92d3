"""Decomposition tables: T split into t_pre / t_calc / t_post, by term, category, layer, module.

Two views of the same run, both exact:

- **contribution to T** (``crit_*`` columns): the terms on the critical path. They add up to T.
  This answers "what would shrink T if it got faster".
- **work** (``t_*`` columns): the sum of every op's terms, on or off the path. Their sum minus T is
  the time hidden by overlap (host running ahead of the device, parallel streams).
"""

from __future__ import annotations

import pandas as pd

from sim.result import SimResult
from sim.units import format_quantity

__all__ = ["decomposition", "by_group", "format_report", "GROUPS"]

GROUPS = ("category", "layer", "module", "phase", "bound", "stream")
_TERMS = (("t_pre", "t_pre_s", "crit_pre_s"), ("t_calc", "t_calc_s", "crit_calc_s"),
          ("t_post", "t_post_s", "crit_post_s"))


def decomposition(result: SimResult) -> pd.DataFrame:
    """One row per term: its contribution to T, its share of T, and the work it stands for."""
    ops, total = result.ops, result.total_s
    rows = []
    for term, work_col, crit_col in _TERMS:
        crit = float(ops[crit_col].sum())
        rows.append({"term": term, "contribution_s": crit, "share_of_T": _share(crit, total),
                     "work_s": float(ops[work_col].sum())})
    work = sum(r["work_s"] for r in rows)
    rows.append({"term": "T", "contribution_s": total, "share_of_T": 1.0 if total else 0.0,
                 "work_s": work})
    return pd.DataFrame(rows)


def by_group(result: SimResult, key: str) -> pd.DataFrame:
    """Per ``key`` (a column such as category or layer): op count, work per term, contribution to
    T per term, and share of T; sorted by contribution, largest first (ties by name)."""
    if key not in GROUPS:
        raise ValueError(f"group by one of {GROUPS}, not {key!r}")
    ops = result.ops
    grouped = ops.groupby(key, sort=True).agg(
        num_ops=("id", "size"),
        t_pre_s=("t_pre_s", "sum"),
        t_calc_s=("t_calc_s", "sum"),
        t_post_s=("t_post_s", "sum"),
        crit_pre_s=("crit_pre_s", "sum"),
        crit_calc_s=("crit_calc_s", "sum"),
        crit_post_s=("crit_post_s", "sum"),
        flops=("flops", "sum"),
        bytes=("bytes", "sum"),
    )
    grouped["t_s"] = grouped[["t_pre_s", "t_calc_s", "t_post_s"]].sum(axis=1)
    grouped["contribution_s"] = grouped[["crit_pre_s", "crit_calc_s", "crit_post_s"]].sum(axis=1)
    grouped["share_of_T"] = grouped["contribution_s"] / result.total_s if result.total_s else 0.0
    grouped = grouped.reset_index()
    return grouped.sort_values(["contribution_s", key], ascending=[False, True],
                               kind="stable").reset_index(drop=True)


def format_report(result: SimResult, *, group: str = "category", top: int = 12) -> str:
    """A plain-text report: header, the decomposition of T, and the breakdown by ``group``."""
    lines = [
        f"hw: {result.hw} ({result.hw_kind})   ops: {result.num_ops}   "
        f"T = {format_quantity(result.total_s, 's')}   regime: {result.regime}",
        "",
        f"{'term':<8}{'on critical path':>18}{'share of T':>12}{'work (all ops)':>17}",
    ]
    for row in decomposition(result).itertuples():
        lines.append(f"{row.term:<8}{format_quantity(row.contribution_s, 's'):>18}"
                     f"{row.share_of_T:>11.1%}{format_quantity(row.work_s, 's'):>17}")
    lines += ["", _group_table(result, group, top)]
    return "\n".join(lines)


def _group_table(result: SimResult, group: str, top: int) -> str:
    table = by_group(result, group)
    header = (f"{group:<28}{'ops':>6}{'t_pre':>11}{'t_calc':>11}{'t_post':>11}"
              f"{'share of T':>12}")
    lines = [header]
    for row in table.head(top).itertuples():
        name = str(getattr(row, group))[:27]
        lines.append(
            f"{name:<28}{row.num_ops:>6}{format_quantity(row.crit_pre_s, 's'):>11}"
            f"{format_quantity(row.crit_calc_s, 's'):>11}"
            f"{format_quantity(row.crit_post_s, 's'):>11}"
            f"{row.share_of_T:>11.1%}"
        )
    if len(table) > top:
        rest = table.iloc[top:]
        lines.append(f"{'(' + str(len(rest)) + ' more)':<28}{int(rest.num_ops.sum()):>6}"
                     f"{'':>33}{float(rest.share_of_T.sum()):>11.1%}")
    return "\n".join(lines)


def _share(part: float, total: float) -> float:
    return part / total if total else 0.0
