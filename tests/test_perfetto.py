"""The Perfetto / Chrome trace-event export of a hand-built five-op simulation.

Scenario (us): one host, compute stream 0, communication stream 1. The critical path is
embed (t_pre 2 + 5) -> q_proj (10) -> act (3) -> down (10): T = 30 us; the all-reduce on stream 1
(17..27) overlaps layer 1, so the module spans of layers 0 and 1 overlap too.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from report_scenario import OPS, tiny_result

from sim.errors import InputError
from sim.report import perfetto_trace, write_perfetto
from sim.result import SimResult

US = 1e-6


def _slices(trace: dict, tid: int) -> list[dict]:
    return [e for e in trace["traceEvents"] if e["ph"] == "X" and e["tid"] == tid]


def _ns(us: float) -> int:
    return round(us * 1000)


def test_crit_columns_sum_to_total():
    result = tiny_result()
    crit = result.ops[["crit_pre_s", "crit_calc_s", "crit_post_s"]].to_numpy().sum()
    assert crit == pytest.approx(result.total_s)


def test_one_slice_per_stream_op_and_per_host_t_pre():
    trace = json.loads(json.dumps(perfetto_trace(tiny_result())))
    events = trace["traceEvents"]
    names = {(e["tid"], e["args"]["name"]) for e in events if e["name"] == "thread_name"}
    assert names >= {(0, "host"), (1, "stream 0"), (2, "stream 1"), (3, "modules")}
    process = [e["args"]["name"] for e in events if e["name"] == "process_name"]
    assert process == ["rank 0 · toy-gpu"]
    assert len(_slices(trace, 0)) == 5  # every op has t_pre > 0
    assert len(_slices(trace, 1)) + len(_slices(trace, 2)) == 5
    assert all(e["pid"] == 0 for e in events)


def test_stream_slices_match_device_interval_in_us():
    trace = perfetto_trace(tiny_result())
    device = sorted(_slices(trace, 1) + _slices(trace, 2), key=lambda e: e["args"]["id"])
    for event, op in zip(device, OPS, strict=True):
        assert (event["name"], event["ts"], event["dur"]) == (op[0], op[7], op[8] - op[7])
    down = device[4]["args"]
    assert (down["t_pre_us"], down["t_calc_us"], down["t_post_us"]) == (2, 9.5, 0.5)
    assert (down["module"], down["bound"], down["critical"]) == (
        "model.layers.1.mlp.down_proj", "compute", True)
    assert (down["flops"], down["bytes"]) == (2_000_000_000, 4_000_000)


def test_host_slices_cover_t_pre():
    trace = perfetto_trace(tiny_result())
    host = [(e["name"], e["ts"], e["dur"]) for e in _slices(trace, 0)]
    assert host == [("aten::embedding", 0, 2), ("aten::mm", 2, 2), ("nccl:all_reduce", 4, 1),
                    ("aten::silu", 5, 1), ("aten::mm", 6, 2)]


def test_module_spans_on_lanes_that_never_overlap():
    trace = perfetto_trace(tiny_result())
    spans = [(e["tid"], e["name"], e["ts"], e["ts"] + e["dur"])
             for tid in (3, 4) for e in _slices(trace, tid)]
    assert spans == [(3, "model.embed_tokens", 2, 7), (3, "model.layers.0", 7, 27),
                     (4, "model.layers.1", 17, 30)]


def test_adjacent_slices_do_not_overlap_after_rounding():
    result = tiny_result()
    ops = result.ops.copy()
    # Back-to-back ops at awkward times: 0.1 + 0.2 us style float noise at each boundary.
    bounds = [k * 0.1e-6 + k * 0.2e-6 + 1e-9 / 3 for k in range(6)]
    ops["stream"] = 0
    ops["start_s"], ops["end_s"] = bounds[:5], bounds[1:]
    trace = perfetto_trace(SimResult(ops=ops, total_s=bounds[-1], hw="x", hw_kind="gpu"))
    for tid in (0, 1):
        events = sorted(_slices(trace, tid), key=lambda e: e["ts"])
        for a, b in zip(events, events[1:], strict=False):
            assert _ns(a["ts"]) + _ns(a["dur"]) <= _ns(b["ts"])
    stream = sorted(_slices(trace, 1), key=lambda e: e["ts"])
    assert all(_ns(a["ts"]) + _ns(a["dur"]) == _ns(b["ts"])
               for a, b in zip(stream, stream[1:], strict=False))


def test_write_is_deterministic_and_valid_json(tmp_path):
    first = write_perfetto(tiny_result(), tmp_path / "a.json").read_bytes()
    second = write_perfetto(tiny_result(), tmp_path / "b.json").read_bytes()
    assert first == second
    data = json.loads(first)
    assert data["otherData"]["hw"] == "toy-gpu"
    assert data["otherData"]["total_us"] == 30


def test_gzip_when_path_ends_in_gz(tmp_path):
    path = write_perfetto(tiny_result(), tmp_path / "t.json.gz")
    assert path.read_bytes()[:2] == b"\x1f\x8b"


def test_missing_directory_is_an_input_error(tmp_path):
    with pytest.raises(InputError):
        write_perfetto(tiny_result(), tmp_path / "nope" / "t.json")
    assert not (tmp_path / "nope").exists()


def test_one_process_per_rank_and_no_host_slice_without_t_pre():
    result = tiny_result()
    ops = pd.concat([result.ops, result.ops.assign(rank=1, id=result.ops["id"] + 5)],
                    ignore_index=True)
    ops.loc[0, "t_pre_s"] = 0.0
    trace = perfetto_trace(SimResult(ops=ops, total_s=result.total_s, hw="toy", hw_kind="gpu"))
    process = {e["pid"]: e["args"]["name"] for e in trace["traceEvents"]
               if e["name"] == "process_name"}
    assert process == {0: "rank 0 · toy", 1: "rank 1 · toy"}
    host = [e for e in trace["traceEvents"] if e["ph"] == "X" and e["tid"] == 0]
    assert [sum(e["pid"] == r for e in host) for r in (0, 1)] == [4, 5]
