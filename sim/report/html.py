"""One self-contained HTML page comparing simulations of the same trace on different hardware.

The page has a summary table (T and its split into t_pre / t_calc / t_post on the critical path),
a timeline, time by category and by layer, a roofline and the top ops, each with a short note on
how to read it. plotly.js is inlined, so the file opens offline and loads nothing from the network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from pathlib import Path

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from sim.errors import InputError
from sim.files import write_atomic
from sim.report.charts import breakdown_figure, roofline_figure
from sim.report.display import TimeUnit, result_labels, time_unit
from sim.report.timeline import timeline_figure
from sim.result import SimResult
from sim.units import format_quantity

__all__ = ["write_html", "html_page", "DIV_IDS", "TOP_OPS"]

#: The id of each chart's div in the page (stable, for links and tests).
DIV_IDS = {
    "timeline": "tksim-timeline",
    "category": "tksim-by-category",
    "layer": "tksim-by-layer",
    "roofline": "tksim-roofline",
}
#: Rows of the top-ops table per result.
TOP_OPS = 20
_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}

_NOTES = {
    "summary": "T is the simulated time of the whole trace. Each op costs t_i = t_pre + t_calc + "
    "t_post, but only the parts on the critical path add to T; the three shares say what T is made "
    "of. A large t_pre share means the host (dispatch and kernel launch) is the bottleneck, so a "
    "faster device alone would not help.",
    "timeline": "Each bar is one op. The host track shows t_pre, the time the host spends "
    "dispatching and launching the op; the stream tracks show when the device executed it "
    "(t_calc + t_post), colored by category. Outlined bars are on the critical path, and gaps on "
    "a stream are time the device waited (often for the host). Drag to zoom; double-click resets.",
    "category": "How much of T each op category accounts for, split into the three terms; the "
    "bars add up to T. 'sum of op times' shows all the work per category, including work that "
    "overlaps other work and so is hidden from T.",
    "layer": "The same split per Transformer layer (from the module path); 'outside layers' holds "
    "embeddings, the final norm and the LM head. Layers usually look alike: an outlier points to a "
    "different op mix or a stall.",
    "roofline": "Each point is an op (identical ops merged; larger points take more total time). "
    "x is its arithmetic intensity, FLOPs per byte moved; y the FLOP/s it achieves during t_calc. "
    "The dashed line is the hardware's limit: under its slope an op is memory-bound, under its "
    "flat part compute-bound. Points far below the line lose time to small shapes or latency.",
    "top": "The longest ops by t_i with what bounds them. An op off the critical path is "
    "overlapped by other work: making it faster would not shorten T.",
}


def write_html(results: SimResult | Sequence[SimResult], path: str | Path, *,
               title: str | None = None) -> Path:
    """Write the report for ``results`` (one per hardware) to ``path`` atomically."""
    if isinstance(results, SimResult):
        results = [results]
    if not results:
        raise InputError("no simulation results to report", source=str(path))
    return write_atomic(path, html_page(results, title=title))


def html_page(results: Sequence[SimResult], *, title: str | None = None) -> str:
    """The whole page as a string (what :func:`write_html` writes)."""
    unit = time_unit(results)
    title = title or _default_title(results)
    body = [
        f"<h1>{escape(title)}</h1>", _meta_line(results),
        _section("summary", "Summary", _summary_table(results)),
        _section("timeline", "Timeline", _figure_div(timeline_figure(results, unit), "timeline")),
        _section("category", "Time by op category",
                 _figure_div(breakdown_figure(results, unit, by="category"), "category")),
        _section("layer", "Time by layer",
                 _figure_div(breakdown_figure(results, unit, by="layer"), "layer")),
        _section("roofline", "Roofline", _figure_div(roofline_figure(results), "roofline")),
        _section("top", f"Top {TOP_OPS} ops by t_i", _top_tables(results, unit)),
    ]
    return _document(title, "\n".join(body))


def _document(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n"
            f"<script type=\"text/javascript\">{get_plotlyjs()}</script>\n</head>\n"
            f"<body>\n{body}\n</body>\n</html>\n")


def _default_title(results: Sequence[SimResult]) -> str:
    name = results[0].trace_meta.get("name") or results[0].trace_meta.get("model")
    return f"tksim: {name}" if name else "tksim simulation report"


def _meta_line(results: Sequence[SimResult]) -> str:
    """The trace's scalar metadata (model, phase, batch, ...) as one line."""
    items = [f"{escape(str(k))}: {escape(str(v))}" for k, v in results[0].trace_meta.items()
             if isinstance(v, str | int | float | bool)]
    intro = ("Every op's time is t_i = t_pre + t_calc + t_post (host dispatch and launch, device "
             "execution, completion); T is the sum of t_i over the critical path.")
    meta = f"<p class=\"meta\">{' · '.join(items)}</p>\n" if items else ""
    return f"{meta}<p>{intro}</p>"


def _section(key: str, heading: str, content: str) -> str:
    return (f"<section id=\"section-{key}\">\n<h2>{escape(heading)}</h2>\n"
            f"<p class=\"note\">{escape(_NOTES[key])}</p>\n{content}\n</section>")


def _figure_div(fig: go.Figure, key: str) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=DIV_IDS[key],
                       config=_PLOTLY_CONFIG)


def _summary_table(results: Sequence[SimResult]) -> str:
    """One row per result: hardware, T, regime, ops, and T's shares of t_pre / t_calc / t_post."""
    head = ["hardware", "kind", "T", "regime", "ops", "t_pre share", "t_calc share",
            "t_post share"]
    rows = []
    for label, r in zip(result_labels(results), results, strict=True):
        shares = [_share(float(r.ops[c].sum()), r.total_s)
                  for c in ("crit_pre_s", "crit_calc_s", "crit_post_s")]
        rows.append([label, r.hw_kind, format_quantity(r.total_s, "s"), r.regime,
                     f"{r.num_ops:,}", *shares])
    return _table(head, rows)


def _share(part_s: float, total_s: float) -> str:
    pct = 100 * part_s / total_s if total_s > 0 else math.nan
    return f"{pct:.1f}% ({format_quantity(part_s, 's')})"


def _top_tables(results: Sequence[SimResult], unit: TimeUnit) -> str:
    """Per result, the TOP_OPS ops with the largest t_s (ties in program order)."""
    head = ["#", "id", "op", "module", "category", f"t_i ({unit.name})",
            f"t_pre ({unit.name})", f"t_calc ({unit.name})", f"t_post ({unit.name})", "bound",
            "critical"]
    parts = []
    for label, r in zip(result_labels(results), results, strict=True):
        top = r.ops.sort_values("t_s", ascending=False, kind="stable").head(TOP_OPS)
        rows = [[str(k), str(o.id), o.name, o.module, o.category,
                 *(f"{t * unit.per_s:.4g}" for t in (o.t_s, o.t_pre_s, o.t_calc_s, o.t_post_s)),
                 o.bound, "yes" if o.critical else "no"]
                for k, o in enumerate(top.itertuples(index=False), start=1)]
        parts.append(f"<h3>{escape(label)}</h3>\n{_table(head, rows)}")
    return "\n".join(parts)


def _table(head: list[str], rows: list[list[object]]) -> str:
    """An HTML table; every cell escaped."""
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "\n".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>"
                     for row in rows)
    return f"<table>\n<thead><tr>{th}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
p.note { color: #444; max-width: 70em; } p.meta { color: #666; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }
th { background: #f5f5f5; } td:nth-child(n+6) { font-variant-numeric: tabular-nums; }
"""
