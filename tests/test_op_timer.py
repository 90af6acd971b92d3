"""The dispatcher timer's bookkeeping (``workloads.op_timer``) on hand-made events with exact
times, and a real capture timed with it when this machine can build it."""

from __future__ import annotations

import pytest

from sim.cost import MeasuredCostModel
from sim.simulator import simulate
from sim.spec_library import load_spec
from sim.trace import Op, Trace, read_trace, write_trace
from workloads.op_timer import Event, TimedStep, align, op_times, timer_module

US = 1000  # ns


def _tree() -> list[Event]:
    """A plain step: linear (t -> transpose, addmm), a no-op to, reshape (-> _reshape_alias)."""
    return [Event("aten::linear", 0, 10 * US, 0),
            Event("aten::t", 1 * US, 2 * US, 1),
            Event("aten::transpose", 1 * US, 2 * US, 2),
            Event("aten::addmm", 2 * US, 8 * US, 1),
            Event("aten::to", 12 * US, 13 * US, 0),
            Event("aten::reshape", 15 * US, 17 * US, 0),
            Event("aten::_reshape_alias", 15 * US, 16 * US, 1)]


NAMES = ["aten::t", "aten::addmm", "aten::view"]  # what the recorder saw


def test_recorded_ops_are_found_inside_composites_and_by_their_dispatch_mode_names():
    assert align(_tree(), NAMES) == [1, 3, 6]


def test_a_missing_required_op_fails_and_a_missing_view_is_absent():
    assert align(_tree(), [*NAMES, "aten::mm"]) is None
    assert align(_tree(), ["aten::t", "aten::detach", "aten::addmm", "aten::view"],
                 [False, True, False, True]) == [1, None, 3, 6]


def test_an_optional_op_does_not_match_past_the_next_required_op():
    tree = [Event("aten::mul", 0, 1, 0), Event("aten::detach", 2, 3, 0)]
    assert align(tree, ["aten::detach", "aten::mul"], [True, False]) == [None, 0]


def _step(offset: int, scale: int) -> TimedStep:
    """Top-level events of a timed step: linear 10 us, to 1 us, reshape 2 us (x ``scale``)."""
    events = [Event("aten::linear", offset + 2 * US, offset + (2 + 10 * scale) * US, 0),
              Event("aten::to", offset + 20 * US, offset + 21 * US, 0),
              Event("aten::reshape", offset + 30 * US, offset + (30 + 2 * scale) * US, 0)]
    return TimedStep(events, offset, offset + 40 * US)


def test_op_times_split_a_composite_by_the_tree_and_take_host_gaps_less_the_timer():
    steps = [_step(0, 1), _step(10**6, 1), _step(2 * 10**6, 3)]  # medians: the scale-1 steps
    timing = op_times(_tree(), steps, NAMES, event_cost_s=1e-6)
    # linear's 10 us split as t (1 us) : addmm (6 us) in the tree step
    assert timing.op_s == pytest.approx([10e-6 / 7, 60e-6 / 7, 2e-6])
    # host before t: 2 us since the start, less one event's timer cost; before view: 30 - 12 us
    # less the timer's cost of ``to`` and ``reshape``; addmm shares linear's start: none
    assert timing.host_s == pytest.approx([1e-6, 0.0, 16e-6])
    # after the last op: no event starts there
    assert timing.after_s == pytest.approx(40e-6 - 32e-6)


def test_a_timed_step_with_other_ops_does_not_line_up():
    other = _step(0, 1)
    other = TimedStep([*other.events[:2], Event("aten::view", 30 * US, 31 * US, 0)], 0, 40 * US)
    assert op_times(_tree(), [other], NAMES) is None


def test_replay_adds_the_measured_host_time_before_each_op():
    ops = (Op(0, "aten::mm", "gemm", measured_s=3e-6, measured_host_s=2e-6),
           Op(1, "aten::add", "elementwise", deps=(0,), measured_s=1e-6, measured_host_s=4e-6),
           Op(2, "aten::mul", "elementwise", deps=(1,), measured_s=1e-6))
    replay = MeasuredCostModel()
    # a CPU: host and ops on the same cores, one after the other
    cpu = simulate(Trace(ops), load_spec("amd-epyc-zen5"), cost_model=replay)
    assert cpu.total_s == pytest.approx(2e-6 + 3e-6 + 4e-6 + 1e-6 + 1e-6)
    # a GPU: add's 4 us of host overlap mm's 3 us on the device (issued at 2 + 4, mm ends at 5)
    gpu = simulate(Trace(ops), load_spec("h100"), cost_model=replay)
    assert gpu.total_s == pytest.approx(2e-6 + 4e-6 + 1e-6 + 1e-6)


def test_measured_host_time_round_trips_and_is_left_out_when_absent(tmp_path):
    trace = Trace((Op(0, "aten::mm", "gemm", measured_s=3e-6, measured_host_s=2e-6),
                   Op(1, "aten::add", "elementwise", deps=(0,))))
    assert read_trace(write_trace(trace, tmp_path / "t.json")) == trace
    assert "measured_host_s" not in trace.ops[1].to_dict()


@pytest.mark.slow
def test_a_real_capture_is_timed_from_inside_the_dispatcher():
    from workloads import capture_model

    if timer_module() is None:
        pytest.skip("no C++ toolchain to build the dispatcher timer here")
    trace = capture_model("llama-tiny", batch=1, seq=8, warmup=1, repeat=2)
    meta = trace.meta
    assert meta["op_timer"] == "dispatcher"
    work = [op for op in trace.ops if op.category != "view"]
    assert all(op.measured_s > 0 and op.measured_host_s is not None for op in work)
    # the timed steps hold every op and the host time between: their parts cannot exceed them
    parts = meta["sum_measured_s"] + meta["measured_host_s"]
    assert parts <= meta["timed_wall_s"] * 1.001
    # the dispatcher's op times leave out the recorder's Python around every op
    assert meta["sum_measured_s"] < meta["recorder_sum_s"]


def test_without_a_toolchain_a_capture_keeps_the_recorders_times(monkeypatch):
    import workloads.capture as capture

    monkeypatch.setattr(capture, "timer_module", lambda: None)
    monkeypatch.setattr(capture, "timer_unavailable", lambda: "RuntimeError: no compiler")
    trace = capture.capture_model("gpt2-tiny", batch=1, seq=8, warmup=0, repeat=1)
    assert trace.meta["op_timer"] == "python"
    assert trace.meta["op_timer_note"] == "RuntimeError: no compiler"
    assert all(op.measured_host_s is None for op in trace.ops)
    assert all(op.measured_s > 0 for op in trace.ops if op.category != "view")


def test_the_python_timer_can_be_asked_for_and_a_bad_name_is_an_input_error():
    from sim.errors import InputError
    from workloads import capture_model

    trace = capture_model("gpt2-tiny", batch=1, seq=8, warmup=0, op_timer="python")
    assert trace.meta["op_timer"] == "python" and "asked for" in trace.meta["op_timer_note"]
    with pytest.raises(InputError) as error:
        capture_model("gpt2-tiny", op_timer="cuda")
    assert error.value.field == "--op-timer"


@pytest.mark.slow
@pytest.mark.parametrize(("name", "phase", "mode"), [
    ("llama-tiny", "decode", "real"), ("gpt2", "prefill", "fake"), ("bert-base", "prefill", "fake"),
    ("mixtral-8x7b", "decode", "fake"), ("opt-125m", "decode", "fake"),
    ("mistral-7b", "prefill", "fake"), ("gpt2-tiny", "train", "real")])
def test_a_host_profile_lines_its_twin_up_with_the_model(name, phase, mode):
    from workloads import capture_model

    if timer_module() is None:
        pytest.skip("no C++ toolchain to build the dispatcher timer here")
    trace = capture_model(name, phase=phase, batch=1, seq=8, mode=mode, layers=2, warmup=1,
                          repeat=1, host_profile=True)
    assert trace.meta["host_profile"] == "twin", trace.meta.get("host_profile_note")
    assert all(op.warm_host_s >= 0 for op in trace.ops)
    assert trace.meta["twin_host_s"] == pytest.approx(
        sum(op.warm_host_s for op in trace.ops), rel=0.5)  # plus the time after its last op
    assert 0 < trace.meta["twin_host_s"] < trace.meta["twin_wall_s"]


def test_without_a_toolchain_a_host_profile_says_why_not(monkeypatch):
    import workloads.capture as capture

    monkeypatch.setattr(capture, "timer_module", lambda: None)
    monkeypatch.setattr(capture, "timer_unavailable", lambda: "RuntimeError: no compiler")
    trace = capture.capture_model("gpt2-tiny", batch=1, seq=8, warmup=0, repeat=1,
                                  host_profile=True)
    assert trace.meta["host_profile"] is None
    assert "not measured" in trace.meta["host_profile_note"]
    assert all(op.warm_host_s is None for op in trace.ops)
