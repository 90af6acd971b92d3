"""Capture phases on the tiny models, real and fake: prefill, decode, train.

Fake and real traces of one model and phase must be the same ops (shapes, deps, FLOPs, bytes,
modules, attrs); training steps must attribute backward ops to their forward's module exactly and
label every optimizer op with its parameter.
"""

from __future__ import annotations

import collections

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sim.errors import InputError
from sim.trace import PHASES
from workloads import build_model, capture_model, capture_module, fake_mode, model_config
from workloads.hf_static import static_hf_checks

B, S, C = 2, 8, 8  # batch, prompt length (prefill, train), context (decode)
TINY = ("gpt2-tiny", "llama-tiny", "mixtral-tiny", "bert-tiny")
CASES = [(m, p) for m in TINY for p in ("prefill", "decode", "train")
         if not (m == "bert-tiny" and p == "decode")]


def _capture(name, phase, mode, **kwargs):
    length = {"context": C} if phase == "decode" else {"seq": S}
    return capture_model(name, phase=phase, batch=B, mode=mode, **length, **kwargs)


@pytest.fixture(scope="module", params=CASES, ids=lambda case: "-".join(case))
def pair(request):
    """(model, phase, real trace, fake trace)."""
    name, phase = request.param
    return name, phase, _capture(name, phase, "real"), _capture(name, phase, "fake")


def _structure(trace):
    return [(op.name, op.category, op.inputs, op.outputs, op.deps, op.flops, op.bytes_read,
             op.bytes_written, op.dtype, op.module, op.phase, op.sync,
             {k: v for k, v in op.attrs.items() if k != "host_calls"})
            for op in trace.ops]


def _host_calls(trace) -> int:
    return sum(op.attrs["host_calls"] for op in trace.ops)


def test_fake_and_real_capture_give_the_same_trace(pair):
    _, _, real, fake = pair
    assert len(real) > 0
    assert _structure(fake) == _structure(real)
    # the model's Python differs a little under fake tensors (measured: 1-5 % fewer calls)
    assert 0.9 * _host_calls(real) <= _host_calls(fake) <= _host_calls(real)


def test_real_capture_is_timed_and_fake_is_not(pair):
    _, _, real, fake = pair
    assert real.meta["mode"] == "real" and fake.meta["mode"] == "fake"
    assert all(op.measured_s > 0 for op in real.ops if op.category != "view")
    assert 0 < real.meta["sum_measured_s"] < real.meta["measured_wall_s"]
    assert all(op.measured_s is None for op in fake.ops)
    assert fake.meta["measured_wall_s"] is None and fake.meta["sum_measured_s"] is None


def test_ops_run_forward_then_backward_then_optimizer(pair):
    _, phase, real, _ = pair
    order = [PHASES.index(op.phase) for op in real.ops]
    assert order == sorted(order)
    expected = {"forward", "backward", "optimizer"} if phase == "train" else {"forward"}
    assert {op.phase for op in real.ops} == expected
    assert real.meta["phase"] == phase


def test_decode_reads_a_kv_cache_of_context_tokens():
    trace = capture_model("llama-tiny", phase="decode", batch=B, context=C, repeat=3)
    attention = [op for op in trace.ops if op.category == "attention"]
    assert len(attention) == 2  # one per layer
    for op in attention:
        assert {k: op.attrs[k] for k in ("b", "h_q", "h_kv", "s_q", "s_k")} == {
            "b": B, "h_q": 4, "h_kv": 2, "s_q": 1, "s_k": C + 1}
    assert {k: trace.meta[k] for k in ("context", "seq", "tokens")} == {
        "context": C, "seq": 1, "tokens": B}
    appends = [op for op in trace.ops if op.attrs.get("kv_cache") == "append"]
    assert [op.name for op in appends] == ["aten::cat"] * 4  # keys and values of 2 layers
    assert all(op.inputs[0].shape == (B, 2, C, 32) for op in appends)


def _linear_flops(trace, phase):
    flops = collections.defaultdict(list)
    for op in trace.ops:
        if op.category == "gemm" and op.phase == phase:
            flops[op.module].append(op.flops)
    return flops


@pytest.mark.parametrize("name", ["llama-tiny", "gpt2-tiny"])
def test_backward_gemms_carry_their_own_module_path(name):
    """Each Linear's backward is two GEMMs (dX, dW) under its own path, each = its forward's."""
    trace = capture_model(name, phase="train", batch=B, seq=S, mode="fake")
    forward, backward = _linear_flops(trace, "forward"), _linear_flops(trace, "backward")
    linears = [m for m in forward if m.rsplit(".", 1)[-1] in
               ("q_proj", "k_proj", "v_proj", "o_proj", "c_attn", "c_proj", "c_fc", "lm_head",
                "gate_proj", "up_proj", "down_proj")]
    assert {"model.layers.0.self_attn.q_proj", "lm_head"} & set(linears)
    for module in linears:
        (flops,) = forward[module]
        assert backward[module] == [flops, flops], module


def test_train_gemm_flops_agree_with_torch_flop_counter():
    name = "llama-tiny"
    trace = capture_model(name, phase="train", batch=B, seq=S)
    model = build_model(model_config(name)).train()
    ids = torch.randint(0, 1024, (B, S))
    counter = FlopCounterMode(display=False)
    with counter, static_hf_checks():
        model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
    assert counter.get_total_flops() == sum(op.flops for op in trace.ops if op.category == "gemm")


def test_attention_backward_is_five_matmuls():
    trace = capture_model("llama-tiny", phase="train", batch=B, seq=S, mode="fake")
    forward, backward = ([op for op in trace.ops if op.category == "attention" and op.phase == p]
                         for p in ("forward", "backward"))
    assert [op.module for op in backward] == [op.module for op in reversed(forward)]
    for op in backward:
        assert op.attrs["backward"] is True and op.attrs["causal"] is True
        assert op.flops == 2.5 * forward[0].flops


def test_optimizer_ops_name_their_parameter():
    trace = capture_model("llama-tiny", phase="train", batch=B, seq=S, mode="fake")
    model = build_model(model_config("llama-tiny"))
    params = dict(model.named_parameters())
    ops = [op for op in trace.ops if op.phase == "optimizer"]
    by_param = collections.defaultdict(list)
    for op in ops:
        assert op.attrs["optimizer"] == "adamw"
        by_param[op.attrs["param"]].append(op)
        assert op.module == op.attrs["param"].rpartition(".")[0]
        assert not op.sync  # the step count's .item() is a host scalar in a GPU run
    assert set(by_param) == set(params)
    names = {tuple(op.name for op in param_ops) for param_ops in by_param.values()}
    assert len(names) == 1  # every parameter: the same single-tensor AdamW sequence
    (sequence,) = names
    assert {"aten::lerp_", "aten::addcmul_", "aten::sqrt", "aten::addcdiv_"} <= set(sequence)
    step_ops = [op for op in ops if op.attrs.get("host_scalar")]
    assert {op.name for op in step_ops} == {"aten::add_", "aten::_local_scalar_dense"}
    assert {k: trace.meta["optimizer"][k] for k in ("kind", "num_params", "param_numel")} == {
        "kind": "adamw", "num_params": len(params),
        "param_numel": sum(p.numel() for p in params.values())}


def test_adamw_update_costs_follow_the_parameter_size():
    trace = capture_model("llama-tiny", phase="train", batch=B, seq=S, mode="fake")
    numel = 1024 * 128  # model.embed_tokens.weight: V x h
    ops = [op for op in trace.ops if op.attrs.get("param") == "model.embed_tokens.weight"]
    addcdiv = next(op for op in ops if op.name == "aten::addcdiv_")
    assert addcdiv.flops == 3 * numel  # x + v * a / b
    assert addcdiv.bytes_read == addcdiv.bytes_written + 2 * numel * 4  # param, exp_avg, denom


def test_decode_of_an_encoder_is_an_input_error():
    with pytest.raises(InputError, match="encoder") as error:
        capture_model("bert-tiny", phase="decode", context=8)
    assert error.value.field == "--phase"


class _TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.Linear(16, 32)
        self.down = nn.Linear(32, 4)

    def forward(self, x):  # x: (8, 16)
        return self.down(torch.relu(self.up(x)))


def _mse(output):
    return (output**2).mean()


@pytest.mark.parametrize("mode", ["real", "fake"])
def test_capture_module_trains_a_user_module(mode):
    if mode == "fake":
        with fake_mode():
            module, x = _TwoLayers(), torch.randn(8, 16)
    else:
        module, x = _TwoLayers(), torch.randn(8, 16)
    trace = capture_module(module, (x,), name="two", phase="train", loss_fn=_mse)
    assert trace.meta["mode"] == mode and trace.meta["phase"] == "train"
    gemms = [(op.module, op.phase, op.flops) for op in trace.ops if op.category == "gemm"]
    assert gemms == [("up", "forward", 2 * 8 * 16 * 32), ("down", "forward", 2 * 8 * 32 * 4),
                     ("down", "backward", 2 * 8 * 32 * 4), ("down", "backward", 2 * 8 * 32 * 4),
                     ("up", "backward", 2 * 8 * 16 * 32)]  # no dX for the input x
    params = {op.attrs["param"] for op in trace.ops if op.phase == "optimizer"}
    assert params == {"up.weight", "up.bias", "down.weight", "down.bias"}


def test_progress_goes_to_stderr_only_when_asked(capsys):
    capture_model("gpt2-tiny", batch=1, seq=4, progress=False)
    assert capsys.readouterr().err == ""
    capture_model("gpt2-tiny", batch=1, seq=4, progress=True)
    err = capsys.readouterr().err
    assert "capture gpt2-tiny prefill" in err and "record" in err


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["prefill", "decode", "train"])
def test_gpt2_small_captures_in_real_mode(phase):
    length = {"context": 16} if phase == "decode" else {"seq": 16}
    trace = capture_model("gpt2-small", phase=phase, batch=1, **length)
    assert trace.meta["mode"] == "real" and trace.meta["params"] == 124_439_808
    assert all(op.measured_s is not None for op in trace.ops)
