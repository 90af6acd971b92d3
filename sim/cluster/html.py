"""HTML report of a parallel simulation: per-stage timeline, where T went, links and memory.

One page (plotly.js inlined, opens offline): a Gantt chart with one row per pipeline stage
(compute busy, communication in flight, idle = bubble), the per-stage split of compute, exposed
and overlapped communication and bubble, the busiest links' utilization, and memory per GPU by
part against the device's capacity.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from sim.cluster.memory import PARTS
from sim.cluster.report import format_cluster_report
from sim.cluster.result import ClusterResult
from sim.files import write_atomic

__all__ = ["write_cluster_html"]

_CONFIG = {"displaylogo": False, "responsive": True}


def write_cluster_html(result: ClusterResult, path: str | Path) -> Path:
    parts = ["<h1>tksim: parallel run</h1>",
             "<pre>" + escape(format_cluster_report(result)) + "</pre>",
             _timeline(result), _split(result), _links(result), _memory(result)]
    return write_atomic(path, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>"
                        "tksim parallel run</title>\n<style>body{font-family:sans-serif;"
                        "margin:2em}</style>\n<script type=\"text/javascript\">"
                        f"{get_plotlyjs()}</script>\n</head><body>\n" + "\n".join(parts)
                        + "\n</body></html>\n")


def _html(fig: go.Figure, key: str) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, config=_CONFIG,
                       div_id=f"tksim-cluster-{key}")


def _timeline(r: ClusterResult) -> str:
    fig = go.Figure()
    for kind, color, offset in (("compute", "#4c78a8", 0.18), ("comm", "#f58518", -0.18)):
        xs, ys = [], []
        for s in r.stages:
            y = s["stage"] + offset
            for start, end in s[f"{kind}_intervals"]:
                xs += [start * 1e3, end * 1e3, None]
                ys += [y, y, None]
        fig.add_scatter(x=xs, y=ys, mode="lines", line={"width": 14, "color": color},
                        name="compute busy" if kind == "compute" else "communication")
    fig.update_layout(title="Per-stage timeline of one iteration (gaps: pipeline bubble and "
                      "waits)", template="plotly_white", xaxis={"title": "time (ms)"},
                      yaxis={"title": "pipeline stage", "autorange": "reversed", "dtick": 1},
                      height=160 + 45 * len(r.stages))
    return _html(fig, "timeline")


def _split(r: ClusterResult) -> str:
    names = [f"stage {s['stage']}" for s in r.stages]
    fig = go.Figure()
    for key, label in (("compute_s", "compute"), ("exposed_comm_s", "exposed communication"),
                       ("overlapped_comm_s", "overlapped communication")):
        fig.add_bar(x=names, y=[s[key] * 1e3 for s in r.stages], name=label)
    fig.add_bar(x=names, y=[s["bubble_fraction"] * r.total_s * 1e3 for s in r.stages],
                name="compute stream idle (bubble)")
    fig.update_layout(title="Per stage (ms)", barmode="group", template="plotly_white",
                      height=380)
    return _html(fig, "split")


def _links(r: ClusterResult) -> str:
    links = sorted(r.links, key=lambda x: -x["utilization"])[:16]
    fig = go.Figure()
    fig.add_bar(x=[f"gpu {x['gpu']} {x['port']}" for x in links],
                y=[100 * x["utilization"] for x in links], name="utilization (% over T)")
    fig.add_bar(x=[f"gpu {x['gpu']} {x['port']}" for x in links],
                y=[100 * x["busy_fraction"] for x in links], name="busy (% of T)")
    fig.update_layout(title="Links of the representative ranks", barmode="group",
                      template="plotly_white", yaxis={"title": "%"}, height=380)
    return _html(fig, "links")


def _memory(r: ClusterResult) -> str:
    names = [f"stage {m.stage}" for m in r.memory]
    fig = go.Figure()
    for part in PARTS:
        fig.add_bar(x=names, y=[m.parts.get(part, 0.0) / 1e9 for m in r.memory], name=part)
    if r.memory:
        fig.add_hline(y=r.memory[0].capacity_bytes / 1e9, line_dash="dash",
                      annotation_text="device memory")
    fig.update_layout(title="Peak memory per GPU (GB)", barmode="stack", template="plotly_white",
                      height=380)
    return _html(fig, "memory")
