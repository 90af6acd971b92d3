"""Aggregate charts of the report: time by category or layer split into terms, and the roofline.

The breakdown charts stack t_pre / t_calc / t_post. By default they show each group's
contribution to T (the ``crit_*_s`` columns, which sum to ``total_s``); a button switches to the
plain sums of the ops' terms (``t_*_s``), which count overlapped work too and can exceed T.

The roofline places each op (identical ops merged) at its arithmetic intensity (FLOP per byte moved)
and achieved rate (FLOP / t_calc), under the line min(peak FLOP/s, intensity x peak bytes/s) of each
hardware: ops left of the ridge point are limited by memory bandwidth, ops right of it by compute.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from sim.report.display import (
    TEMPLATE,
    TERM_COLORS,
    TERM_LABELS,
    TimeUnit,
    category_color,
    result_labels,
)
from sim.result import SimResult
from sim.units import format_quantity

__all__ = ["breakdown_figure", "roofline_figure", "ROOFLINE_MAX_POINTS"]

#: Most points on the roofline per page, shared by its results (the ops with the most total
#: t_calc are kept).
ROOFLINE_MAX_POINTS = 3000
_ROOFLINE_MIN_POINTS = 500  # per result, however many results share the page
_CRIT = ("crit_pre_s", "crit_calc_s", "crit_post_s")
_SUMS = ("t_pre_s", "t_calc_s", "t_post_s")
_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star", "cross", "pentagon")
_DASHES = ("dash", "dot", "dashdot", "longdash", "longdashdot")
_OUTSIDE_LAYERS = "outside layers"


def breakdown_figure(results: Sequence[SimResult], unit: TimeUnit, *, by: str) -> go.Figure:
    """Stacked bars of time per ``by`` group ("category" or "layer"), one bar per result each."""
    table = _breakdown_table(results, by)
    keys = table["key"].tolist()
    x = [keys, table["hw"].tolist()] if len(results) > 1 else keys
    fig = go.Figure()
    shares = len(results) > 1  # devices differ by orders of magnitude: compare shares first
    views = ((_CRIT, unit.per_s, unit.name, not shares), (_SUMS, unit.per_s, unit.name, False),
             (_CRIT, None, "%", shares))
    for columns, scale, name, visible in views:
        for column, color, label in zip(columns, TERM_COLORS, TERM_LABELS, strict=True):
            y = table[column].to_numpy(dtype=float)
            y = y * scale if scale is not None else 100.0 * y / table["total_s"].to_numpy(float)
            fig.add_trace(go.Bar(
                x=x, y=y, name=label, marker_color=color, visible=visible, legendgroup=label,
                showlegend=visible,
                hovertemplate=f"%{{x}}<br>{label}: %{{y:.4g}} {name}<extra></extra>"))
    toggle = _term_toggle(unit, active=2 if shares else 0)
    title = "share of T (%)" if shares else f"contribution to T ({unit.name})"
    fig.update_layout(template=TEMPLATE, barmode="stack", height=460, yaxis_title=title,
                      updatemenus=[toggle], margin={"t": 70})
    return fig


def _breakdown_table(results: Sequence[SimResult], by: str) -> pd.DataFrame:
    """Per (group, result): the summed crit_* and t_* columns, groups in display order."""
    frames = []
    for label, result in zip(result_labels(results), results, strict=True):
        sums = result.ops.groupby(by, sort=True)[list(_CRIT + _SUMS)].sum().reset_index()
        total = result.total_s or 1.0  # an empty trace: shares of 0
        frames.append(sums.assign(hw=label, total_s=total).rename(columns={by: "group"}))
    table = pd.concat(frames, ignore_index=True)
    table["order"] = _group_order(table, by)
    table["key"] = table["group"].map(_layer_label if by == "layer" else str)
    return table.sort_values(["order", "hw"], kind="stable").reset_index(drop=True)


def _group_order(table: pd.DataFrame, by: str) -> pd.Series:
    """Layers in index order (outside layers first); categories by total contribution to T."""
    if by == "layer":
        return table["group"].astype(int)
    total = table.groupby("group")[list(_CRIT)].sum().sum(axis=1)
    rank = {g: k for k, g in enumerate(total.sort_values(ascending=False, kind="stable").index)}
    return table["group"].map(rank)


def _layer_label(layer: object) -> str:
    return _OUTSIDE_LAYERS if int(layer) < 0 else f"layer {int(layer)}"


def _term_toggle(unit: TimeUnit, *, active: int = 0) -> dict:
    """Buttons switching between contributions to T (crit_*), plain sums of t_*, and each
    device's contributions as a share of its own T (3 traces each)."""
    def view(k: int) -> list[bool]:
        return [k == j for j in range(3) for _ in range(3)]

    buttons = [
        {"label": "contribution to T (critical path)", "method": "update",
         "args": [{"visible": view(0)}, {"yaxis.title.text": f"contribution to T ({unit.name})"}]},
        {"label": "sum of op times", "method": "update",
         "args": [{"visible": view(1)}, {"yaxis.title.text": f"sum of t_i terms ({unit.name})"}]},
        {"label": "share of T", "method": "update",
         "args": [{"visible": view(2)}, {"yaxis.title.text": "share of T (%)"}]},
    ]
    return {"type": "buttons", "direction": "right", "x": 0.0, "y": 1.12, "xanchor": "left",
            "showactive": True, "active": active, "buttons": buttons}


def roofline_figure(results: Sequence[SimResult]) -> go.Figure:
    """Ops at (FLOP/byte, achieved FLOP/s) on log axes, with each hardware's roofline."""
    limit = max(_ROOFLINE_MIN_POINTS, ROOFLINE_MAX_POINTS // len(results))
    points = [_roofline_points(r.ops, limit) for r in results]
    fig = go.Figure()
    many = len(results) > 1
    for k, (label, pts) in enumerate(zip(result_labels(results), points, strict=True)):
        for category, group in pts.groupby("category", sort=True):
            fig.add_trace(_point_trace(group, str(category), label if many else "",
                                       _SYMBOLS[k % len(_SYMBOLS)]))
    lo, hi = _intensity_range(results, points)
    for k, (label, result) in enumerate(zip(result_labels(results), results, strict=True)):
        if result.peak_flops_per_s > 0 and result.peak_bytes_per_s > 0:
            fig.add_trace(_roof_trace(result, label, lo, hi, _DASHES[k % len(_DASHES)]))
    fig.update_layout(template=TEMPLATE, height=520, legend_title_text="category · hw")
    fig.update_xaxes(type="log", title_text="arithmetic intensity (FLOP / byte)")
    fig.update_yaxes(type="log", title_text="achieved FLOP/s = flops / t_calc",
                     exponentformat="SI")
    return fig


def _roofline_points(ops: pd.DataFrame, limit: int) -> pd.DataFrame:
    """Ops with work and time, identical ones merged (count), the ``limit`` longest in all."""
    keep = (ops["flops"] > 0) & (ops["bytes"] > 0) & (ops["t_calc_s"] > 0)
    keys = ["category", "name", "flops", "bytes", "t_calc_s"]
    pts = ops.loc[keep].groupby(keys, sort=True).agg(
        count=("id", "size"), module=("module", "first"), bound=("bound", "first")).reset_index()
    pts["total_s"] = pts["count"] * pts["t_calc_s"]
    pts = pts.sort_values("total_s", ascending=False, kind="stable").head(limit)
    pts["intensity"] = pts["flops"] / pts["bytes"]
    pts["achieved"] = pts["flops"] / pts["t_calc_s"]
    return pts


def _point_trace(pts: pd.DataFrame, category: str, hw: str, symbol: str) -> go.Scatter:
    """Markers of one category on one hardware; area grows with the points' share of t_calc."""
    share = pts["total_s"].to_numpy(dtype=float) / max(float(pts["total_s"].max()), 1e-30)
    hover = [f"<b>{escape(str(p.name))}</b> ×{p.count}<br>{escape(str(p.module))}<br>"
             f"{p.intensity:.3g} FLOP/B, {p.achieved:.3g} FLOP/s, {p.bound}-bound<br>"
             f"t_calc {format_quantity(p.t_calc_s, 's')} each" for p in pts.itertuples(index=False)]
    name = f"{category} · {hw}" if hw else category
    return go.Scatter(x=pts["intensity"].to_numpy(dtype=float),
                      y=pts["achieved"].to_numpy(dtype=float), mode="markers", name=name,
                      legendgroup=category, hovertext=hover,
                      hovertemplate="%{hovertext}<extra></extra>",
                      marker={"color": category_color(category), "symbol": symbol,
                              "size": 6 + 16 * np.sqrt(share), "opacity": 0.75,
                              "line": {"width": 0.5, "color": "#333333"}})


def _intensity_range(results: Sequence[SimResult],
                     points: Sequence[pd.DataFrame]) -> tuple[float, float]:
    """x range for the roof lines: the points' range and every ridge point, with a margin."""
    values = [v for p in points for v in p["intensity"].tolist()]
    values += [r.peak_flops_per_s / r.peak_bytes_per_s for r in results
               if r.peak_flops_per_s > 0 and r.peak_bytes_per_s > 0]
    if not values:
        return 0.1, 1e4
    return min(values) / 4, max(values) * 4


def _roof_trace(result: SimResult, label: str, lo: float, hi: float, dash: str) -> go.Scatter:
    """min(peak FLOP/s, intensity x peak bytes/s) from ``lo`` to ``hi`` (a bend at the ridge)."""
    ridge = result.peak_flops_per_s / result.peak_bytes_per_s
    x = np.array(sorted({lo, min(max(ridge, lo), hi), hi}))
    y = np.minimum(result.peak_flops_per_s, x * result.peak_bytes_per_s)
    return go.Scatter(x=x, y=y, mode="lines", name=f"roofline {label}",
                      line={"color": "#333333", "dash": dash, "width": 1.5},
                      hovertemplate=f"roofline {escape(label)}<br>%{{x:.3g}} FLOP/B → "
                                    f"%{{y:.3g}} FLOP/s<extra></extra>")
