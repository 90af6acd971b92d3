"""The timeline chart: where each op ran and when, one row of tracks per simulated hardware.

Each result gets a panel with a ``host`` track (one bar per op for its t_pre, from
``host_start_s`` to ``issue_s``) and one track per device stream (one bar per op from ``start_s``
to ``end_s``, i.e. its t_calc + t_post, colored by category). Ops on the critical path are
outlined. Large traces (more than :data:`TIMELINE_MAX_OPS` ops on the page) are thinned to the
critical-path ops and the longest ops, so the page stays small and responsive; the panel title
says how many ops are shown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sim.report.display import (
    TEMPLATE,
    TERM_COLORS,
    TimeUnit,
    category_color,
    result_labels,
)
from sim.result import SimResult

__all__ = ["timeline_figure", "select_timeline_ops", "TIMELINE_MAX_OPS"]

#: Most ops the timeline draws per page, shared by its results (at least 1,000 each); above it a
#: result shows only its critical-path ops and its longest ops.
TIMELINE_MAX_OPS = 5000
_TIMELINE_MIN_OPS = 1000
_TRACK_HEIGHT_PX = 34
_PANEL_EXTRA_PX = 90


def timeline_figure(results: Sequence[SimResult], unit: TimeUnit) -> go.Figure:
    """A figure with one panel per result (shared time axis) of host and stream tracks."""
    limit = max(_TIMELINE_MIN_OPS, TIMELINE_MAX_OPS // len(results))
    shown = [select_timeline_ops(r.ops, limit) for r in results]
    tracks = [_tracks(r.ops) for r in results]
    titles = [_panel_title(label, r, len(ops), unit)
              for label, r, ops in zip(result_labels(results), results, shown, strict=True)]
    rows = len(results)
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, subplot_titles=titles,
                        row_heights=[len(t) for t in tracks],
                        vertical_spacing=min(0.12, 0.3 / rows))
    legend: set[str] = set()
    for row, (ops, names) in enumerate(zip(shown, tracks, strict=True), start=1):
        for bar in _bars(ops, names, unit, legend):
            fig.add_trace(bar, row=row, col=1)
        fig.update_yaxes(categoryorder="array", categoryarray=list(names.values()),
                         autorange="reversed", row=row, col=1)
    height = sum(_TRACK_HEIGHT_PX * len(t) + _PANEL_EXTRA_PX for t in tracks) + 60
    fig.update_layout(template=TEMPLATE, barmode="overlay", height=height, bargap=0.25,
                      legend_title_text="category", hovermode="closest")
    fig.update_xaxes(title_text=f"time ({unit.name})", row=rows, col=1)
    return fig


def select_timeline_ops(ops: pd.DataFrame, limit: int = TIMELINE_MAX_OPS) -> pd.DataFrame:
    """All ops if there are at most ``limit``, else the critical ops first and then the longest
    (by t_s), ``limit`` in all, back in program order."""
    if len(ops) <= limit:
        return ops
    critical = ops["critical"].to_numpy(dtype=bool)
    order = np.lexsort((-ops["t_s"].to_numpy(dtype=float), ~critical))  # stable: ties by order
    return ops.iloc[np.sort(order[:limit])]


def _tracks(ops: pd.DataFrame) -> dict[tuple[int, object], str]:
    """Track labels keyed by (rank, stream) with stream ``None`` for the host, host first."""
    ranks = sorted(ops["rank"].unique().tolist())
    prefix = {r: f"rank {r} " if len(ranks) > 1 else "" for r in ranks}
    names: dict[tuple[int, object], str] = {}
    for rank in ranks:
        names[(rank, None)] = f"{prefix[rank]}host"
        for stream in sorted(ops.loc[ops["rank"] == rank, "stream"].unique().tolist()):
            names[(rank, stream)] = f"{prefix[rank]}stream {stream}"
    return names


def _panel_title(label: str, result: SimResult, num_shown: int, unit: TimeUnit) -> str:
    title = f"{label}: T = {result.total_s * unit.per_s:.4g} {unit.name}"
    if num_shown < result.num_ops:
        title += f" (showing {num_shown:,} of {result.num_ops:,} ops: critical path and longest)"
    return title


def _bars(ops: pd.DataFrame, tracks: dict[tuple[int, object], str], unit: TimeUnit,
          legend: set[str]) -> list[go.Bar]:
    """The host bar trace, then one device bar trace per category (legend entry shown once)."""
    ops = ops.reset_index(drop=True)  # positions, so hover[...] lines up with each group
    hover = _hover_text(ops, unit)
    host = ops["t_pre_s"].to_numpy(dtype=float) > 0
    bars = [_bar(ops[host], _host_hover(ops[host], unit), "host_start_s", "issue_s", unit,
                 y=[tracks[(r, None)] for r in ops.loc[host, "rank"]],
                 name="host t_pre", color=TERM_COLORS[0], show=_first(legend, "host t_pre"))]
    for category, group in ops.groupby("category", sort=True):
        y = [tracks[(r, s)] for r, s in zip(group["rank"], group["stream"], strict=True)]
        name = str(category)
        bars.append(_bar(group, hover[group.index.to_numpy()], "start_s", "end_s", unit, y=y,
                         name=name, color=category_color(name), show=_first(legend, name)))
    return bars


def _bar(ops: pd.DataFrame, hover: np.ndarray, start: str, end: str, unit: TimeUnit, *,
         y: list[str], name: str, color: str, show: bool) -> go.Bar:
    """Horizontal bars from ``ops[start]`` to ``ops[end]``; critical ops get a dark outline."""
    start_u, end_u = _rounded(ops[start], unit), _rounded(ops[end], unit)
    width = np.where(ops["critical"].to_numpy(dtype=bool), 1.5, 0.0)
    return go.Bar(orientation="h", y=y, base=start_u, x=_rounded_diff(end_u, start_u, unit),
                  name=name, legendgroup=name, showlegend=show, hovertext=hover,
                  hovertemplate="%{hovertext}<extra></extra>",
                  marker={"color": color, "line": {"color": "#222222", "width": width}})


def _rounded(times_s: pd.Series, unit: TimeUnit) -> np.ndarray:
    """Times in ``unit`` rounded to 1 ns: short in the page's JSON; touching bars still touch."""
    return np.round(times_s.to_numpy(dtype=float) * unit.per_s, _decimals(unit))


def _rounded_diff(end: np.ndarray, start: np.ndarray, unit: TimeUnit) -> np.ndarray:
    return np.round(end - start, _decimals(unit))


def _decimals(unit: TimeUnit) -> int:
    """Decimal places of 1 ns in ``unit`` (3 for us, 6 for ms, 9 for s)."""
    return 9 - round(math.log10(unit.per_s))


def _first(seen: set[str], name: str) -> bool:
    """True the first time ``name`` is seen (so each legend entry appears once per figure)."""
    new = name not in seen
    seen.add(name)
    return new


def _host_hover(ops: pd.DataFrame, unit: TimeUnit) -> np.ndarray:
    """Short hover for host bars: op and its t_pre (details are on the device bar)."""
    return np.array([f"{escape(str(r.name))} #{r.id}: t_pre {r.t_pre_s * unit.per_s:.4g} "
                     f"{unit.name}" for r in ops.itertuples(index=False)], dtype=object)


def _hover_text(ops: pd.DataFrame, unit: TimeUnit) -> np.ndarray:
    """One hover line block per op: name, module, bound and its three terms in the page's unit."""
    u = unit.per_s
    return np.array([
        f"<b>{escape(str(r.name))}</b> #{r.id}<br>{escape(str(r.module))}<br>"
        f"{r.category}, {r.bound}-bound"
        f"{' · critical' if r.critical else ''}<br>t_pre {r.t_pre_s * u:.4g} · t_calc "
        f"{r.t_calc_s * u:.4g} · t_post {r.t_post_s * u:.4g} {unit.name}"
        f"<br>device {r.start_s * u:.6g}–{r.end_s * u:.6g} {unit.name}"
        for r in ops.itertuples(index=False)], dtype=object)
