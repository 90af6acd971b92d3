"""An HTML page of the many-device validation: targets, tables and predicted-vs-measured plots.

Draws the dict of :func:`validation.cluster_validation.run_cluster_validation`: NCCL collectives
per DGX node (log-log scatter, one trace per system and collective), NeuSight's 4-GPU runs and
Megatron-LM's throughput (bars, predicted beside measured). plotly.js is inlined.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from sim.files import write_atomic

__all__ = ["write_cluster_report", "cluster_report_html"]

_CONFIG = {"displaylogo": False, "responsive": True}


def write_cluster_report(results: dict, html_path: str | Path) -> Path:
    return write_atomic(html_path, cluster_report_html(results))


def cluster_report_html(results: dict) -> str:
    from validation.cluster_validation import cluster_results_markdown

    parts = ["<h1>tksim many-device validation</h1>",
             f"<p>{escape(results['protocol'])}. Runtime {results['runtime_s']:.1f} s.</p>",
             "<pre>" + escape(cluster_results_markdown(results)) + "</pre>",
             _nccl_scatter(results["nccl_points"]),
             _bars(results["neusight"], "NeuSight 4-GPU GPT-2-Large training iteration (s)",
                   lambda r: f"{r['device'].split('_')[1]} {r['variant']} b={r['batch']}",
                   "predicted_s", "measured_s", "neusight"),
             _bars(results["megatron"], "Megatron-LM TFLOP/s per GPU (SC'21 Table 1)",
                   lambda r: f"{r['params_billion']}B {r['tp']}x{r['pp']}x{r['dp']}",
                   "predicted_tflops_per_gpu", "published_tflops_per_gpu", "megatron")]
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>tksim many-device "
            "validation</title>\n<style>body{font-family:sans-serif;margin:2em}</style>\n"
            f"<script type=\"text/javascript\">{get_plotlyjs()}</script>\n</head><body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


def _nccl_scatter(points: list[dict]) -> str:
    fig = go.Figure()
    groups: dict[tuple, list[dict]] = {}
    for p in points:
        groups.setdefault((p["system"], p["collective"]), []).append(p)
    values = [v for p in points for v in (p["measured_s"], p["predicted_s"])]
    for (system, kind), rows in sorted(groups.items()):
        fig.add_scatter(x=[r["measured_s"] for r in rows], y=[r["predicted_s"] for r in rows],
                        mode="markers", name=f"{system} {kind}", marker={"size": 5})
    if values:
        fig.add_scatter(x=[min(values), max(values)], y=[min(values), max(values)],
                        mode="lines", name="predicted = measured",
                        line={"dash": "dash", "color": "gray"})
    fig.update_layout(title="NCCL on 8 GPUs: predicted vs measured (s)", template="plotly_white",
                      xaxis={"type": "log", "title": "measured (s)"},
                      yaxis={"type": "log", "title": "predicted (s)"}, height=520)
    return fig.to_html(full_html=False, include_plotlyjs=False, config=_CONFIG,
                       div_id="tksim-nccl")


def _bars(rows: list[dict], title: str, label, predicted: str, measured: str, key: str) -> str:
    names = [label(r) for r in rows]
    fig = go.Figure()
    fig.add_bar(x=names, y=[r[predicted] for r in rows], name="predicted")
    fig.add_bar(x=names, y=[r[measured] for r in rows], name="measured / published")
    fig.update_layout(title=title, template="plotly_white", barmode="group", height=420)
    return fig.to_html(full_html=False, include_plotlyjs=False, config=_CONFIG,
                       div_id=f"tksim-{key}")
