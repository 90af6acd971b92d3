"""The HTML report: a hand-built five-op simulation on two "hardwares"; a 20,000-op one for size.

Tiny scenario (us), as in test_perfetto: T = 30 us, of which the critical path holds t_pre 2
(6.7%), t_calc 4 + 9 + 3 + 9.5 = 25.5 (85.0%) and t_post 1 + 1 + 0.5 = 2.5 (8.3%).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from plotly.offline import get_plotlyjs
from report_scenario import tiny_result

from sim.errors import InputError
from sim.report import write_html
from sim.report.charts import breakdown_figure, roofline_figure
from sim.report.display import time_unit
from sim.report.html import DIV_IDS
from sim.report.timeline import TIMELINE_MAX_OPS, select_timeline_ops
from sim.result import COLUMNS, SimResult

US = 1e-6

def synthetic_result(num_ops: int, hw: str = "big-gpu", seed: int = 0) -> SimResult:
    """A serial chain: the host runs ahead (t_pre 1 us), so T = t_pre[0] + sum(t_calc + t_post)."""
    rng = np.random.default_rng(seed)
    cats = np.array(["gemm", "attention", "elementwise", "norm", "collective"])
    category = cats[np.arange(num_ops) % len(cats)]
    t_pre, t_post = np.full(num_ops, 1 * US), np.full(num_ops, 0.5 * US)
    t_calc = rng.lognormal(np.log(20 * US), 1.0, num_ops)
    end = t_pre[0] + np.cumsum(t_calc + t_post)
    layer = np.arange(num_ops) // 50 - 1
    flops = np.where(category == "gemm", rng.uniform(1e9, 1e11, num_ops), 1e6)
    host_start = np.arange(num_ops) * US
    ops = pd.DataFrame({
        "id": np.arange(num_ops), "name": np.char.add("aten::", category), "category": category,
        "module": [f"model.layers.{k}.block" if k >= 0 else "model.embed" for k in layer],
        "phase": "forward", "layer": layer, "stream": np.where(category == "collective", 1, 0),
        "rank": 0, "host_start_s": host_start, "issue_s": host_start + t_pre,
        "start_s": end - t_calc - t_post, "end_s": end, "t_pre_s": t_pre, "t_calc_s": t_calc,
        "t_post_s": t_post, "t_s": t_pre + t_calc + t_post,
        "bound": np.where(category == "gemm", "compute", "memory"), "flops": flops,
        "bytes": rng.uniform(1e5, 1e8, num_ops), "waited_for": "stream", "critical": True,
        "crit_pre_s": np.where(np.arange(num_ops) == 0, t_pre, 0.0), "crit_calc_s": t_calc,
        "crit_post_s": t_post,
    }, columns=list(COLUMNS))
    return SimResult(ops=ops, total_s=float(end[-1]), hw=hw, hw_kind="gpu",
                     peak_flops_per_s=1e15, peak_bytes_per_s=3e12)


def _outside_plotly_js(page: str) -> str:
    js = get_plotlyjs()
    assert page.count(js) == 1  # inlined once
    return page.replace(js, "")


def test_page_has_each_hw_each_chart_and_no_network(tmp_path):
    path = write_html([tiny_result("A100-80GB"), tiny_result("H100-SXM")], tmp_path / "r.html")
    page = path.read_text(encoding="utf-8")
    assert "A100-80GB" in page and "H100-SXM" in page
    for div_id in DIV_IDS.values():
        assert f'id="{div_id}"' in page
    rest = _outside_plotly_js(page)
    assert "cdn.plot.ly" not in rest
    assert not re.search(r"<script[^>]*\bsrc=", page)
    assert "<title>tksim: toy</title>" in page


def test_summary_decomposes_T_into_critical_shares(tmp_path):
    page = write_html(tiny_result("toy-gpu"), tmp_path / "r.html").read_text(encoding="utf-8")
    summary = page[page.index('id="section-summary"'):page.index('id="section-timeline"')]
    for text in ("30 us", "device-bound", "6.7% (2 us)", "85.0% (25.5 us)", "8.3% (2.5 us)"):
        assert text in summary


def test_top_table_lists_ops_by_t_i(tmp_path):
    page = write_html([tiny_result("toy-gpu")], tmp_path / "r.html", title="Top").read_text()
    top = page[page.index('id="section-top"'):]
    assert top.count("<tr><td>") == 5
    rows = top[top.index("<tr><td>1</td>"):].split("</tr>")[:3]
    # q_proj and down_proj tie at 12 us (program order first), then the overlapped all-reduce
    assert "q_proj" in rows[0] and "down_proj" in rows[1] and "<td>12</td>" in rows[1]
    assert "nccl:all_reduce" in rows[2] and "<td>memory</td><td>no</td>" in rows[2]


def test_breakdown_by_category_adds_up_to_T():
    results = [tiny_result("toy-gpu")]
    fig = breakdown_figure(results, time_unit(results), by="category")
    crit = [trace for trace in fig.data if trace.visible]
    assert [t.name for t in crit] == ["t_pre (host)", "t_calc (device)", "t_post (completion)"]
    assert sum(float(np.sum(t.y)) for t in crit) == pytest.approx(30.0)  # us
    assert list(crit[0].x) == ["gemm", "embedding", "elementwise", "collective"]


def test_breakdown_by_layer_labels_outside_layers():
    results = [tiny_result("a"), tiny_result("b")]
    fig = breakdown_figure(results, time_unit(results), by="layer")
    groups, hws = fig.data[1].x
    assert list(groups) == ["outside layers"] * 2 + ["layer 0"] * 2 + ["layer 1"] * 2
    assert list(hws) == ["a", "b"] * 3
    assert list(fig.data[1].y) == pytest.approx([4, 4, 9, 9, 12.5, 12.5])


def test_comparing_devices_shows_shares_of_each_t():
    results = [tiny_result("a"), tiny_result("b")]
    fig = breakdown_figure(results, time_unit(results), by="category")
    shown = [trace for trace in fig.data if trace.visible]
    assert fig.layout.yaxis.title.text == "share of T (%)"
    per_hw = {hw: 0.0 for hw in ("a", "b")}
    for trace in shown:
        for hw, y in zip(trace.x[1], trace.y, strict=True):
            per_hw[hw] += y
    assert per_hw == pytest.approx({"a": 100.0, "b": 100.0})


def test_roofline_has_points_and_one_roof_per_hw():
    fig = roofline_figure([tiny_result("a"), tiny_result("b")])
    roofs = [t for t in fig.data if t.mode == "lines"]
    assert [t.name for t in roofs] == ["roofline a", "roofline b"]
    assert max(roofs[0].y) == pytest.approx(1e15)
    gemm = [t for t in fig.data if t.name == "gemm · a"][0]
    assert len(gemm.x) == 2  # q_proj and down_proj differ in t_calc: two points
    assert gemm.x[0] == pytest.approx(500.0)  # 2e9 FLOP / 4e6 bytes


def test_large_timeline_keeps_critical_then_longest_in_order():
    result = synthetic_result(12_000)
    ops = result.ops.assign(critical=result.ops["id"] % 3 == 0)  # 4,000 critical ops
    shown = select_timeline_ops(ops)
    assert len(shown) == TIMELINE_MAX_OPS
    assert shown["critical"].sum() == 4000
    assert shown["id"].is_monotonic_increasing
    rest = ops[~ops["critical"]]
    assert shown.loc[~shown["critical"], "t_s"].min() >= rest["t_s"].nlargest(1000).min()


def test_20k_ops_write_small(tmp_path):
    # speed is a benchmark's business (no wall-clock bound in a unit test on shared machines)
    result = synthetic_result(20_000)
    assert result.ops[["crit_pre_s", "crit_calc_s", "crit_post_s"]].to_numpy().sum() == (
        pytest.approx(result.total_s))
    path = write_html([result], tmp_path / "big.html")
    assert path.stat().st_size < 10e6


def test_same_results_same_bytes(tmp_path):
    a = write_html([tiny_result("x")], tmp_path / "a.html").read_bytes()
    b = write_html([tiny_result("x")], tmp_path / "b.html").read_bytes()
    assert a == b


def test_missing_directory_raises_and_leaves_nothing(tmp_path):
    with pytest.raises(InputError):
        write_html([tiny_result("x")], tmp_path / "missing" / "r.html")
    assert list(tmp_path.iterdir()) == []


def test_rewrite_replaces_file_without_temporaries(tmp_path):
    path = tmp_path / "r.html"
    path.write_text("old")
    write_html([tiny_result("x")], path)
    assert path.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_no_results_is_an_input_error(tmp_path):
    with pytest.raises(InputError):
        write_html([], tmp_path / "r.html")
