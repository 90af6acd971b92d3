"""How the HTML report shows things: one time unit per page, fixed colors per category and term.

Every chart of a page uses the same time unit (picked from the longest T) and the same color for
a category (``gemm`` has one color in the timeline, the breakdown and the roofline), so a reader
can move between charts without re-learning the legend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import plotly.colors

from sim.result import SimResult
from sim.trace import CATEGORIES

__all__ = [
    "TimeUnit", "time_unit", "category_color", "result_labels", "TERM_COLORS", "TERM_LABELS",
    "TEMPLATE",
]

#: Plotly layout template shared by every figure of the report.
TEMPLATE = "plotly_white"

#: Colors of the three terms of t_i = t_pre + t_calc + t_post, in that order.
TERM_COLORS = ("#F58518", "#4C78A8", "#54A24B")
TERM_LABELS = ("t_pre (host)", "t_calc (device)", "t_post (completion)")

_PALETTE = plotly.colors.qualitative.Plotly + plotly.colors.qualitative.D3
_CATEGORY_COLORS = dict(zip(CATEGORIES, _PALETTE, strict=False))
_OTHER_COLOR = "#9E9E9E"


@dataclass(frozen=True)
class TimeUnit:
    """A display unit for times: ``value_s * per_s`` is the number shown next to ``name``."""

    name: str
    per_s: float


def time_unit(results: Sequence[SimResult]) -> TimeUnit:
    """ms for runs of a millisecond or more, else us (the longest T decides, for all charts)."""
    longest_s = max((r.total_s for r in results), default=0.0)
    if longest_s >= 1.0:
        return TimeUnit("s", 1.0)
    return TimeUnit("ms", 1e3) if longest_s >= 1e-3 else TimeUnit("us", 1e6)


def category_color(category: str) -> str:
    """The color of an op category; categories outside ``sim.trace.CATEGORIES`` are gray."""
    return _CATEGORY_COLORS.get(category, _OTHER_COLOR)


def result_labels(results: Sequence[SimResult]) -> list[str]:
    """One label per result: its ``hw``, with ``#2``, ``#3`` ... added when a name repeats."""
    labels, seen = [], {}
    for result in results:
        seen[result.hw] = seen.get(result.hw, 0) + 1
        labels.append(result.hw if seen[result.hw] == 1 else f"{result.hw} #{seen[result.hw]}")
    return labels
