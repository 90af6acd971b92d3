"""A simulation as a Chrome trace-event JSON timeline (opens in ui.perfetto.dev and chrome://tracing).

Layout: one process (``pid``) per rank, named ``rank 0 · <hw>``. Inside it, one thread (``tid``) per
track: ``host`` (tid 0) holds one slice per op for its t_pre (``host_start_s`` .. ``issue_s``); each
device stream has a track with one slice per op (``start_s`` .. ``end_s``, i.e. t_calc + t_post);
the ``modules`` track holds one slice per contiguous run of ops in the same top-level module
(``model.layers.3``), spanning those ops' device intervals.

Times are microseconds (the format's unit). Start and end are rounded to :data:`RESOLUTION_NS`
(1 ns = 1e-3 us) and the duration is derived as ``end - start``, so slices that touch in the
simulation touch (never overlap) in the file. Same result in, same bytes out (sorted keys, fixed
event order).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from sim.files import write_atomic
from sim.result import SimResult

__all__ = ["perfetto_trace", "write_perfetto", "RESOLUTION_NS"]

#: Resolution of ``ts`` and ``dur``: times are rounded to whole nanoseconds (3 decimals in us).
RESOLUTION_NS = 1
HOST_TID = 0
_STREAM_TID_BASE = 1  # stream k (in sorted order) gets tid 1 + k; module lanes come after
_LAYER_MODULE = re.compile(r"^(.*?\.\d+)(?:\.|$)")  # "model.layers.3.mlp" -> "model.layers.3"


def perfetto_trace(result: SimResult) -> dict[str, Any]:
    """The result as a trace-event dict with keys traceEvents, displayTimeUnit and otherData."""
    events: list[dict[str, Any]] = []
    for rank, ops in result.ops.groupby("rank", sort=True):
        events.extend(_rank_events(int(rank), ops, result.hw))
    return {
        "traceEvents": events,
        "displayTimeUnit": "ns",
        "otherData": _other_data(result),
    }


def write_perfetto(result: SimResult, path: str | Path) -> Path:
    """Write :func:`perfetto_trace` as JSON to ``path`` atomically (gzip if it ends in ``.gz``)."""
    text = json.dumps(perfetto_trace(result), sort_keys=True, separators=(",", ":"),
                      allow_nan=False)
    return write_atomic(path, text)


def _rank_events(rank: int, ops: pd.DataFrame, hw: str) -> list[dict[str, Any]]:
    """Metadata, then host, stream and module slices of one rank (pid = rank)."""
    streams = sorted(ops["stream"].unique().tolist())
    stream_tid = {s: _STREAM_TID_BASE + k for k, s in enumerate(streams)}
    spans = _module_spans(ops)
    lanes = _assign_lanes(spans)
    module_tid0 = _STREAM_TID_BASE + len(streams)
    names = {HOST_TID: "host"} | {t: f"stream {s}" for s, t in stream_tid.items()}
    names |= {module_tid0 + k: "modules" if k == 0 else f"modules {k + 1}"
              for k in range(max(lanes, default=-1) + 1)}
    events = _metadata(rank, f"rank {rank} · {hw}", names)
    events += [_slice(rank, HOST_TID, row.name, row.host_start_s, row.issue_s, _host_args(row))
               for row in ops.itertuples(index=False) if row.t_pre_s > 0]
    events += [_slice(rank, stream_tid[row.stream], row.name, row.start_s, row.end_s,
                      _op_args(row)) for row in ops.itertuples(index=False)]
    events += [_slice(rank, module_tid0 + lane, name, start, end, {"num_ops": n})
               for (name, start, end, n), lane in zip(spans, lanes, strict=True)]
    return events


def _metadata(pid: int, process: str, threads: dict[int, str]) -> list[dict[str, Any]]:
    """``ph: "M"`` events naming the process and its threads, ordered as listed."""
    events = [{"ph": "M", "pid": pid, "tid": 0, "name": "process_name", "args": {"name": process}},
              {"ph": "M", "pid": pid, "tid": 0, "name": "process_sort_index",
               "args": {"sort_index": pid}}]
    for tid, name in sorted(threads.items()):
        events.append({"ph": "M", "pid": pid, "tid": tid, "name": "thread_name",
                       "args": {"name": name}})
        events.append({"ph": "M", "pid": pid, "tid": tid, "name": "thread_sort_index",
                       "args": {"sort_index": tid}})
    return events


def _slice(pid: int, tid: int, name: str, start_s: float, end_s: float,
           args: dict[str, Any]) -> dict[str, Any]:
    """A complete (``ph: "X"``) event; start and end rounded, duration derived from them."""
    start_ns, end_ns = _ns(start_s), _ns(end_s)
    return {"ph": "X", "pid": pid, "tid": tid, "name": str(name), "ts": start_ns / 1000,
            "dur": max(end_ns - start_ns, 0) / 1000, "args": args}


def _ns(t_s: float) -> int:
    """Seconds -> whole nanoseconds (at :data:`RESOLUTION_NS`)."""
    return round(float(t_s) * 1e9 / RESOLUTION_NS) * RESOLUTION_NS


def _host_args(row: Any) -> dict[str, Any]:
    return {"id": int(row.id), "module": str(row.module), "t_pre_us": _us(row.t_pre_s)}


def _op_args(row: Any) -> dict[str, Any]:
    """What a user sees when clicking a device slice: the op's terms, bound and work."""
    return {
        "id": int(row.id), "module": str(row.module), "category": str(row.category),
        "bound": str(row.bound), "t_pre_us": _us(row.t_pre_s), "t_calc_us": _us(row.t_calc_s),
        "t_post_us": _us(row.t_post_s), "flops": _number(row.flops), "bytes": _number(row.bytes),
        "critical": bool(row.critical), "waited_for": str(row.waited_for),
    }


def _us(t_s: float) -> float:
    return _ns(t_s) / 1000


def _number(value: Any) -> int | float | None:
    """A JSON-safe number: integral floats as int, NaN/inf as null."""
    value = float(value)
    if not math.isfinite(value):
        return None
    return int(value) if value.is_integer() else value


def _module_spans(ops: pd.DataFrame) -> list[tuple[str, float, float, int]]:
    """(top module, first start_s, last end_s, num ops) per contiguous run in program order."""
    keys = ops["module"].fillna("").astype(str).map(_top_module).to_numpy()
    frame = pd.DataFrame({"key": keys, "start_s": ops["start_s"].to_numpy(),
                          "end_s": ops["end_s"].to_numpy()})
    frame["run"] = (frame["key"] != frame["key"].shift()).cumsum()
    runs = frame.groupby("run", sort=True).agg(
        key=("key", "first"), start_s=("start_s", "min"), end_s=("end_s", "max"),
        num_ops=("key", "size"))
    runs = runs[runs["key"] != ""]
    return [(str(k), float(s), float(e), int(n)) for k, s, e, n in runs.itertuples(index=False)]


def _top_module(module: str) -> str:
    """The module path up to its first numeric part (``model.layers.3.mlp`` -> ``model.layers.3``),
    else the whole path (``model.embed_tokens``); ``""`` for ops in no module."""
    match = _LAYER_MODULE.match(module)
    return match.group(1) if match else module


def _assign_lanes(spans: list[tuple[str, float, float, int]]) -> list[int]:
    """Put each span on the first lane whose last span has ended, so slices on a lane never
    overlap (a communication op may still run when the next layer starts)."""
    lane_end_ns: list[int] = []
    lanes = []
    for _, start_s, end_s, _ in spans:
        start_ns = _ns(start_s)
        lane = next((k for k, end in enumerate(lane_end_ns) if end <= start_ns), len(lane_end_ns))
        if lane == len(lane_end_ns):
            lane_end_ns.append(0)
        lane_end_ns[lane] = _ns(end_s)
        lanes.append(lane)
    return lanes


def _other_data(result: SimResult) -> dict[str, Any]:
    """Run-level facts shown by Perfetto under "info": hardware, T, and scalar trace metadata."""
    meta = {str(k): v for k, v in result.trace_meta.items()
            if isinstance(v, str | int | bool) or (isinstance(v, float) and math.isfinite(v))}
    return {"hw": result.hw, "hw_kind": result.hw_kind, "total_us": _us(result.total_s),
            "regime": result.regime, "num_ops": result.num_ops, "trace_meta": meta}
