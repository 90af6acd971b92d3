"""Reports of a simulation: a self-contained HTML page and a Perfetto (Chrome trace-event) timeline.

Only this package imports plotly.
"""

from sim.report.html import write_html
from sim.report.perfetto import perfetto_trace, write_perfetto

__all__ = ["write_html", "write_perfetto", "perfetto_trace"]
