"""An HTML page of a GPU validation run: results tables and predicted-vs-measured scatter plots.

:func:`write_gpu_report` draws the dict of :func:`validation.gpu_validation.run_gpu_validation`:
the targets, the per GPU x category table (calibrated and datasheet-only side by side, with the
split), the NCCL and Llama-layer tables, and one log-log scatter per category with a trace per GPU
(the datasheet-only points are in the legend, hidden until clicked). plotly.js is inlined, so the
page opens offline.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from sim.files import write_atomic

__all__ = ["write_gpu_report", "gpu_report_html", "gpu_results_markdown"]

_CONFIG = {"displaylogo": False, "responsive": True}


def write_gpu_report(results: dict, html_path: str | Path) -> Path:
    """Write the report page of ``results`` to ``html_path`` (atomically); return the path."""
    return write_atomic(html_path, gpu_report_html(results))


def gpu_report_html(results: dict) -> str:
    parts = [
        "<h1>tksim GPU validation</h1>",
        f"<p>Dataset: {escape(str(results['dataset']))}. Fit on: "
        f"{escape(results['protocol']['fit_split'])}. Held out: "
        f"{escape(results['protocol']['heldout'])}. Runtime {results['runtime_s']:.1f} s.</p>",
        "<h2>Targets (held-out GPUs, calibrated)</h2>", _targets_table(results["targets"]),
        "<h2>Per GPU and category</h2>", _table(results["pooled"], ["gpu", "category"]),
        "<h2>NCCL all-reduce, 8 GPUs, messages of 1 MiB and more</h2>",
        _table(results["nccl_allreduce_8gpu"], ["gpu"]),
        "<h2>Llama layers (Vidur): sum of the layer's ops</h2>",
        _table(results["layers"], ["gpu", "model"]),
        "<h2>Per dataset, GPU and category</h2>",
        _table(results["metrics"], ["dataset", "gpu", "category"]),
        "<h2>Predicted vs measured</h2>",
    ]
    categories = sorted({p["category"] for p in results["points"]})
    parts += [_scatter(results["points"], category) for category in categories]
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>tksim GPU validation"
            "</title>\n<style>body{font-family:sans-serif;margin:2em}table{border-collapse:"
            "collapse;margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:2px 8px;"
            "text-align:right}th{background:#f4f4f4}</style>\n"
            f"<script type=\"text/javascript\">{get_plotlyjs()}</script>\n</head><body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _table(entries: list[dict], keys: list[str]) -> str:
    head = "".join(f"<th>{k}</th>" for k in keys) + (
        "<th>split</th><th>n</th><th>median APE</th><th>p90</th><th>bias</th>"
        "<th>datasheet median</th><th>datasheet p90</th><th>datasheet bias</th>")
    rows = []
    for e in entries:
        c, d = e["calibrated"], e["datasheet"]
        cells = "".join(f"<td>{escape(str(e[k]))}</td>" for k in keys)
        rows.append(f"<tr>{cells}<td>{e['split']}</td><td>{c['count']}</td>"
                    f"<td>{_pct(c['median_ape'])}</td><td>{_pct(c['p90_ape'])}</td>"
                    f"<td>{_pct(c['bias'])}</td><td>{_pct(d['median_ape'])}</td>"
                    f"<td>{_pct(d['p90_ape'])}</td><td>{_pct(d['bias'])}</td></tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _verdict(target: dict) -> str:
    if target.get("excluded"):
        return f"excluded: {escape(target['excluded'])}"
    return "met" if target["met"] else "NOT met"


def _targets_table(targets: list[dict]) -> str:
    rows = "".join(
        f"<tr><td>{escape(t['target'])}</td><td>{escape(t['gpu'])}</td>"
        f"<td>{escape(t['model'])}</td><td>{t['statistic']}</td><td>{_pct(t['value'])}</td>"
        f"<td>&le; {_pct(t['bound'])}</td><td>{_verdict(t)}</td>"
        f"<td>{_pct(t['datasheet_value'])}</td></tr>" for t in targets)
    return ("<table><tr><th>target</th><th>gpu</th><th>model</th><th>statistic</th>"
            "<th>calibrated</th><th>bound</th><th></th><th>datasheet-only</th></tr>"
            f"{rows}</table>")


def _scatter(points: list[dict], category: str) -> str:
    fig = go.Figure()
    low, high = float("inf"), 0.0
    for p in (p for p in points if p["category"] == category):
        label = f"{p['gpu']} ({p['split']})"
        fig.add_scatter(x=p["measured_s"], y=p["calibrated_s"], mode="markers", name=label,
                        marker={"size": 4, "opacity": 0.6})
        fig.add_scatter(x=p["measured_s"], y=p["datasheet_s"], mode="markers",
                        name=f"{label} datasheet-only", visible="legendonly",
                        marker={"size": 4, "opacity": 0.4, "symbol": "x"})
        values = [v for v in p["measured_s"] + p["calibrated_s"] if v > 0]
        low, high = min(low, min(values)), max(high, max(values))
    fig.add_scatter(x=[low, high], y=[low, high], mode="lines", name="predicted = measured",
                    line={"dash": "dash", "color": "gray"})
    fig.update_layout(title=f"{category}: predicted vs measured (s)", template="plotly_white",
                      xaxis={"type": "log", "title": "measured (s)"},
                      yaxis={"type": "log", "title": "predicted (s)"}, height=520)
    return fig.to_html(full_html=False, include_plotlyjs=False, config=_CONFIG,
                       div_id=f"tksim-gpu-{category}")


def gpu_results_markdown(results: dict) -> str:
    """The per GPU x category table (and the NCCL and layer rows) as Markdown, for docs and CLIs."""
    lines = ["| GPU | category | split | n | median APE | p90 | bias | datasheet median | "
             "datasheet p90 | datasheet bias |", "|---" * 10 + "|"]
    entries = ([(e, e["category"]) for e in results["pooled"]]
               + [(e, "nccl all-reduce 8 GPUs >= 1 MiB") for e in results["nccl_allreduce_8gpu"]]
               + [(e, f"layer sum {e['model']}") for e in results["layers"]])
    for e, label in entries:
        c, d = e["calibrated"], e["datasheet"]
        lines.append(f"| {e['gpu']} | {label} | {e['split']} | {c['count']} | "
                     f"{_pct(c['median_ape'])} | {_pct(c['p90_ape'])} | {_pct(c['bias'])} | "
                     f"{_pct(d['median_ape'])} | {_pct(d['p90_ape'])} | {_pct(d['bias'])} |")
    return "\n".join(lines) + "\n"
