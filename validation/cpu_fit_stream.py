"""Stage 2 of the CPU fit: streaming ops (see :mod:`validation.cpu_fit`).

Parameters: the achieved bandwidth of each memory level, a floor per category, an element time
per (op, dtype) present, the strided-copy fraction and the page-fault bandwidth; the effective
capacity of the last-level cache is chosen from :data:`LLC_CANDIDATES_MIB` by the lowest loss.
The arithmetic is :func:`sim.cost.cpu.stream_seconds`, vectorized over every op of the points.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from sim.cost.cpu import STREAM_CATEGORIES, stream_seconds, stream_terms
from sim.cpu_calibration import CpuCalibration, StreamLevel

__all__ = ["fit_stream", "stream_points", "LLC_CANDIDATES_MIB"]

#: Effective last-level cache capacities tried (MiB); the datasheet L3 of a CCD is 32 MiB.
LLC_CANDIDATES_MIB = (4, 6, 8, 12, 16, 24, 32)
_MIB = 2**20


def stream_points(points: Sequence) -> list:
    """Points made only of streaming ops and views."""
    ok = {*STREAM_CATEGORIES, "view"}
    return [p for p in points if p.kind != "view" and all(op.category in ok for op in p.ops)]


def _element_param(key: str, dtype: str) -> str:
    return key if dtype == "fp32" else f"{key}.{dtype}"


def _arrays(points, cal: CpuCalibration) -> dict:
    """Per streaming op: its point, terms and parameter indices (views add dispatch only)."""
    rows, point_of, views = [], [], np.zeros(len(points))
    for i, p in enumerate(points):
        for op in p.ops:
            if op.category == "view":
                views[i] += 1
            else:
                rows.append(stream_terms(op, cal, p.residency))
                point_of.append(i)
    keys = sorted({_element_param(r["key"], r["dtype"]) for r in rows})
    row_keys = sorted({_element_param(r["key"], r["dtype"]) for r in rows if r["rows"] > 0})
    categories = sorted({r["category"] for r in rows})
    key_category = {_element_param(r["key"], r["dtype"]): r["category"] for r in rows}
    return {
        "point": np.array(point_of), "views": views, "keys": keys, "categories": categories,
        "level": np.array([r["level"] for r in rows]),
        "bytes": np.array([r["bytes"] for r in rows], dtype=float),
        "elements": np.array([r["elements"] for r in rows], dtype=float),
        "rows": np.array([r["rows"] for r in rows], dtype=float),
        "strided": np.array([r["strided"] for r in rows], dtype=bool),
        "fault": np.array([r["fault_bytes"] for r in rows], dtype=float),
        "key": np.array([keys.index(_element_param(r["key"], r["dtype"])) for r in rows]),
        "key_category": [key_category[k] for k in keys], "row_keys": row_keys,
        "row_key": np.array([row_keys.index(k) if k in row_keys else len(row_keys)
                             for k in (_element_param(r["key"], r["dtype"]) for r in rows)]),
    }


def _unpack(x: np.ndarray, a: dict, n_levels: int) -> dict:
    n_key, n_row = len(a["keys"]), len(a["row_keys"])
    end = n_levels + 2 * n_key
    return {"bw": x[:n_levels], "floor": x[n_levels:n_levels + n_key],
            "element": x[n_levels + n_key:end],
            "row": np.append(x[end:end + n_row], 0.0),  # the last: ops with no rows
            "strided": x[-2], "fault": x[-1]}


def _op_seconds(v: dict, a: dict) -> np.ndarray:
    bandwidth = v["bw"][a["level"]] * np.where(a["strided"], v["strided"], 1.0)
    return stream_seconds(v["floor"][a["key"]], a["bytes"], bandwidth, a["elements"],
                          v["element"][a["key"]], a["rows"], v["row"][a["row_key"]],
                          a["fault"], v["fault"])


def _fit_once(points, cal: CpuCalibration, fit_lsq) -> tuple[CpuCalibration, float]:
    a = _arrays(points, cal)
    measured = np.array([p.measured_s for p in points])
    n_ops = a["views"] + np.bincount(a["point"], minlength=len(points))
    n_levels = len(cal.levels)
    n_keys, n_rows = len(a["keys"]), len(a["row_keys"])
    start = np.concatenate([[lv.bandwidth_bytes_per_s for lv in cal.levels],
                            np.full(n_keys, 1e-6), np.full(n_keys, 2e-10),
                            np.full(n_rows, 1e-8), [cal.strided_fraction, cal.fault_bytes_per_s]])
    low = np.concatenate([np.full(n_levels, 1e9), np.zeros(2 * n_keys + n_rows), [0.02, 1e8]])
    high = np.concatenate([np.full(n_levels, 2e12), np.full(n_keys, 1e-4),
                           np.full(n_keys, 1e-7), np.full(n_rows, 1e-5), [1.0, 1e11]])

    def residuals(x):
        seconds = _op_seconds(_unpack(x, a, n_levels), a)
        pred = n_ops * cal.dispatch_s + np.bincount(a["point"], seconds, minlength=len(points))
        return np.log(pred / measured)

    x = fit_lsq(residuals, start, low, high)
    loss = float(np.sum(np.log1p(np.abs(residuals(x)) / 0.1)))
    return _calibration(cal, _unpack(x, a, n_levels), a), loss


def _calibration(cal: CpuCalibration, v: dict, a: dict) -> CpuCalibration:
    """``cal`` with the fitted values; element times that bind on no op are dropped."""
    bandwidth = v["bw"][a["level"]] * np.where(a["strided"], v["strided"], 1.0)
    binds = (a["elements"] * v["element"][a["key"]] + a["rows"] * v["row"][a["row_key"]]
             > a["bytes"] / bandwidth)
    elements = {k: float(v["element"][i]) for i, k in enumerate(a["keys"])
                if binds[a["key"] == i].any()}
    rows = {k: float(v["row"][i]) for i, k in enumerate(a["row_keys"])
            if binds[a["row_key"] == i].any()}
    levels = tuple(dataclasses.replace(lv, bandwidth_bytes_per_s=float(bw))
                   for lv, bw in zip(cal.levels, v["bw"], strict=True))
    op_floors = {k: float(v["floor"][i]) for i, k in enumerate(a["keys"])}
    floors = dict(cal.floor_s)  # an unmeasured op of a category: the median of its ops
    for category in set(a["key_category"]):
        members = [op_floors[k] for k, c in zip(a["keys"], a["key_category"], strict=True)
                   if c == category]
        floors[category] = float(np.median(members))
    return dataclasses.replace(cal, levels=levels, floor_s=floors, op_floor_s=op_floors,
                               element_s=elements, row_s=rows,
                               strided_fraction=float(v["strided"]),
                               fault_bytes_per_s=float(v["fault"]))


def fit_stream(points: Sequence, cal: CpuCalibration, fit_lsq) -> CpuCalibration:
    """Fit stage 2 on the streaming points of ``points`` for each candidate LLC capacity; keep
    the best. ``fit_lsq(residuals, start, low, high)`` is the robust least-squares solver."""
    points = stream_points(points)
    best, best_loss = cal, np.inf
    llc = len(cal.levels) - 2
    for mib in LLC_CANDIDATES_MIB:
        levels = list(cal.levels)
        levels[llc] = StreamLevel(levels[llc].name, float(mib * _MIB),
                                  levels[llc].bandwidth_bytes_per_s)
        trial = dataclasses.replace(cal, levels=tuple(levels))
        fitted, loss = _fit_once(points, trial, fit_lsq)
        if loss < best_loss:
            best, best_loss = fitted, loss
    return best
