"""The host profile: a shrunken twin's warm host times, and the CPU model of how cold they run."""

from __future__ import annotations

import dataclasses
import math

import pytest
import yaml

from sim.cost.cpu_host import code_key, cold_fraction, profiled_host_s, since_last_run
from sim.cost.model import CalibratedCostModel, cost_ops
from sim.cpu_calibration import HostProfileModel
from sim.errors import InputError
from sim.spec_library import load_spec
from sim.trace import Op, Trace, read_trace, write_trace
from tests.cpu_fixtures import TOY_CAL, stream_op
from validation.cpu_spec_file import write_calibrated_spec
from workloads.host_twin import TWIN_HEAD_DIM, TWIN_VOCAB, twin_config, warm_host_times
from workloads.models import model_config


def _layer_ops() -> list[Op]:
    """Two layers of (norm, add) and a head op: 5 ops with modules as a capture writes them."""
    spec = [("layers.0", "aten::norm"), ("layers.0", "aten::add"), ("layers.1", "aten::norm"),
            ("layers.1", "aten::add"), ("head", "aten::mm")]
    return [Op(id=i, name=name, category="elementwise", module=module)
            for i, (module, name) in enumerate(spec)]


def test_code_key_drops_layer_indices_and_counts_repeats_in_a_module():
    ops = _layer_ops() + [Op(id=5, name="aten::mm", category="gemm", module="head")]
    keys = code_key(ops)
    assert keys[0] == keys[2] == ("layers.#", "aten::norm", 0)
    assert keys[1] == keys[3] == ("layers.#", "aten::add", 0)
    assert keys[4] == ("head", "aten::mm", 0) and keys[5] == ("head", "aten::mm", 1)
    assert code_key([Op(id=0, name="v", category="view", module="h.12.attn.c_proj")])[0][0] == \
        "h.#.attn.c_proj"


def test_since_last_run_is_the_kernel_time_since_the_same_code_steps_back_to_back():
    t_calc = [1.0, 2.0, 3.0, 4.0, 5.0]  # step: 15
    since = since_last_run(_layer_ops(), t_calc)
    # layer 1's norm ran one layer after layer 0's: ops 0 and 1 in between (1 + 2)
    assert since[2] == 3.0 and since[3] == 2.0 + 3.0
    # layer 0's norm last ran as the previous step's layer 1: ops 2, 3, 4 of that step
    assert since[0] == 3.0 + 4.0 + 5.0 and since[1] == 4.0 + 5.0 + 1.0
    assert since[4] == 15.0  # code that runs once a step: a whole step


def test_profiled_host_time_is_warm_time_slowed_by_coldness_less_the_call_overlap():
    ops = [dataclasses.replace(op, warm_host_s=2e-6, attrs={"host_calls": 2})
           for op in _layer_ops()]
    t_calc = [1e-3] * 5
    host = profiled_host_s(ops, t_calc, [2.0] * 5, cold_factor=3.0, cold_time_s=1e-3,
                           call_overlap_s=0.25e-6)
    # op 2: 2 ms since its code ran; op 4: 5 ms (a step)
    assert host[2] == pytest.approx(2e-6 * (1 + 3 * (1 - math.exp(-2))) - 0.5e-6)
    assert host[4] == pytest.approx(2e-6 * (1 + 3 * (1 - math.exp(-5))) - 0.5e-6)
    assert cold_fraction(1.0, 0.0) == 0.0 and cold_fraction(0.0, 1.0) == 0.0


def test_cost_ops_prices_a_profiled_trace_with_the_host_model(toy_cpu):
    profile = HostProfileModel(cold_factor=2.0, cold_time_s=10e-6, call_overlap_s=0.5e-6)
    spec = dataclasses.replace(toy_cpu, cpu_calibration=dataclasses.replace(
        TOY_CAL, framework_s=1e-6, host_profile=profile))
    ops = [dataclasses.replace(stream_op("add", (256,), inputs=2), id=i, module=f"layers.{i}",
                               warm_host_s=3e-6) for i in range(2)]
    bare = cost_ops(ops, dataclasses.replace(spec, cpu_calibration=dataclasses.replace(
        spec.cpu_calibration, host_profile=None)), CalibratedCostModel())
    assert [c.t_pre_s for c in bare] == [1e-6 + 1e-6] * 2  # dispatch + framework x 1 call
    costs = cost_ops(ops, spec, CalibratedCostModel())
    t = bare[0].t_calc_s  # each add's kernel time: the time since the other ran
    expected = 1e-6 + 3e-6 * (1 + 2 * (1 - math.exp(-t / 10e-6))) - 0.5e-6
    assert [c.t_pre_s for c in costs] == pytest.approx([expected] * 2)
    assert [c.t_calc_s for c in costs] == [c.t_calc_s for c in bare]
    # one op without a warm time: the whole trace is priced with the framework term
    mixed = [ops[0], dataclasses.replace(ops[1], warm_host_s=None)]
    assert [c.t_pre_s for c in cost_ops(mixed, spec, CalibratedCostModel())] == [2e-6] * 2


def test_warm_host_times_round_trip_through_the_trace_file(tmp_path):
    trace = Trace((Op(0, "aten::mm", "gemm", measured_s=3e-6, measured_host_s=2e-6,
                      warm_host_s=1.5e-6), Op(1, "aten::add", "elementwise", deps=(0,))))
    back = read_trace(write_trace(trace, tmp_path / "t.json"))
    assert back.ops[0].warm_host_s == 1.5e-6 and back.ops[1].warm_host_s is None
    assert "warm_host_s" not in (tmp_path / "t.json").read_text().splitlines()[-1]


def test_a_spec_reads_and_checks_its_host_profile_model(tmp_path, toy_cpu):
    levels = tuple(dataclasses.replace(lv, name=m.name)
                   for lv, m in zip(TOY_CAL.levels, toy_cpu.memory, strict=True))
    cal = dataclasses.replace(TOY_CAL, levels=levels, datasheet="toy-cpu",
                              host_profile=HostProfileModel(5.8, 0.02, 0.68e-6))
    path = write_calibrated_spec(tmp_path / "toy-1t.yaml", toy_cpu, cal, name="toy-cpu-1t",
                                 provenance="test fixture")
    read = load_spec(str(path)).cpu_calibration.host_profile
    assert (read.cold_factor, read.cold_time_s) == (5.8, pytest.approx(0.02))
    assert read.call_overlap_s == pytest.approx(0.68e-6)
    data = yaml.safe_load(path.read_text())
    data["cpu_calibration"]["host_profile"]["cold_time"] = "-1 ms"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match="cold_time"):
        load_spec(str(path))


@pytest.mark.parametrize("name", ["gpt2", "llama-2-7b", "bert-base", "mixtral-8x7b", "opt-125m"])
def test_twin_config_keeps_the_structure_and_shrinks_every_width(name):
    config = model_config(name)
    twin = twin_config(config)
    assert type(twin) is type(config)
    assert twin.num_hidden_layers == config.num_hidden_layers
    assert twin.num_attention_heads == config.num_attention_heads
    assert twin.hidden_size == config.num_attention_heads * TWIN_HEAD_DIM
    assert twin.vocab_size == TWIN_VOCAB
    for field in ("num_key_value_heads", "num_local_experts", "num_experts_per_tok"):
        assert getattr(twin, field, None) == getattr(config, field, None)


def test_warm_host_times_need_the_same_ops_in_the_same_order():
    ops = [Op(0, "aten::mm", "gemm"), Op(1, "aten::add", "elementwise")]
    twin = [dataclasses.replace(op, measured_host_s=1e-6 * (op.id + 1)) for op in ops]
    assert warm_host_times(ops, twin) == [1e-6, 2e-6]
    assert "issued 1 ops" in warm_host_times(ops, twin[:1])
    assert "aten::mul" in warm_host_times(ops, [twin[0], dataclasses.replace(
        twin[1], name="aten::mul")])
    assert "not measured" in warm_host_times(ops, ops)


def test_the_host_profile_fit_recovers_a_known_model(toy_cpu):
    from validation.cpu_calibrate import (
        FRAMEWORK_MODELS,
        HOST_COLD_TIMES_S,
        fit_host_profile,
    )
    from validation.machine_state import StateCapture

    spec = dataclasses.replace(toy_cpu, cpu_calibration=TOY_CAL)
    cold_time, factor = HOST_COLD_TIMES_S[12], 3.0
    captures = {}
    for model, layers, size in ((FRAMEWORK_MODELS[0], 2, 64), (("big", "prefill", 64), 4, 2**20)):
        ops = [dataclasses.replace(stream_op("add", (size,), inputs=2), id=i,
                                   module=f"layers.{i}", warm_host_s=2e-6, measured_s=1e-6)
               for i in range(layers)]
        t_calc = [c.t_calc_s for c in cost_ops(ops, spec, CalibratedCostModel())]
        since = since_last_run(ops, t_calc)
        ops = [dataclasses.replace(op, measured_host_s=2e-6 * (
            1 + factor * cold_fraction(s, cold_time))) for op, s in zip(ops, since, strict=True)]
        wall = sum(t_calc) + sum(op.measured_host_s for op in ops)
        captures[model] = [StateCapture(Trace(tuple(ops)), wall, 0.0)]
    model, interval, sentence = fit_host_profile(spec, captures)
    assert model.cold_time_s == cold_time and model.cold_factor == pytest.approx(factor)
    # the wall is exactly ops + host: the model's dispatch (1 us per op) is the overlap
    assert model.call_overlap_s == pytest.approx(TOY_CAL.dispatch_s)
    assert interval.low == pytest.approx(1.0) and interval.high == pytest.approx(1.0)
    assert "cold factor 3.00" in sentence and interval.count == 2


def test_without_timed_host_profiles_the_calibration_fits_no_host_model(toy_cpu):
    from validation.cpu_calibrate import FRAMEWORK_MODELS, fit_host_profile
    from validation.machine_state import StateCapture

    spec = dataclasses.replace(toy_cpu, cpu_calibration=TOY_CAL)
    ops = (dataclasses.replace(stream_op("add", (64,), inputs=2), measured_s=1e-6),)
    model, interval, sentence = fit_host_profile(
        spec, {FRAMEWORK_MODELS[0]: [StateCapture(Trace(ops), 1e-5, 0.0)]})
    assert model is None and interval is None and "No host profile model" in sentence
