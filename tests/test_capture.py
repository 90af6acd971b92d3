"""Trace capture from real runs: graph invariants, FLOP counts, module paths, storage semantics."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from transformers.pytorch_utils import Conv1D

from sim.errors import InputError
from sim.trace import CATEGORIES, read_trace, write_trace
from workloads import MODELS, build_model, capture_model, capture_module, causal_pairs, model_config
from workloads.recorder import OpRecorder

BATCH, SEQ = 2, 16  # b, s of the captured prefill; tokens = b * s
TOKENS = BATCH * SEQ
# model -> (module path of layer i's attention, query heads, key/value heads, head dim)
ATTENTION = {
    "gpt2-tiny": ("transformer.h.{}.attn", 4, 4, 32),
    "llama-tiny": ("model.layers.{}.self_attn", 4, 2, 32),
}


@pytest.fixture(scope="module", params=sorted(ATTENTION))
def captured(request):
    """(name, trace, independently built model with the same config) for each tiny model."""
    name = request.param
    trace = capture_model(name, batch=BATCH, seq=SEQ)
    return name, trace, build_model(model_config(name))


def _gemm_modules(model: nn.Module) -> dict[str, int]:
    """Module path -> weight elements of every Linear / Conv1D (GPT-2's transposed Linear)."""
    return {name: m.weight.numel() for name, m in model.named_modules()
            if isinstance(m, nn.Linear | Conv1D)}


def test_trace_is_a_dag_in_program_order(captured):
    _, trace, _ = captured
    assert len(trace) > 0
    assert [op.id for op in trace.ops] == list(range(len(trace)))
    for op in trace.ops:
        assert all(0 <= dep < op.id for dep in op.deps), op
        assert op.category in CATEGORIES
        assert op.phase == "forward"
        if op.category != "view":
            assert op.measured_s is not None and op.measured_s > 0, op
        else:
            assert op.flops == op.bytes_read == op.bytes_written == 0


def test_meta_describes_the_run(captured):
    name, trace, _ = captured
    meta = trace.meta
    assert {k: meta[k] for k in ("model", "phase", "batch", "seq", "dtype", "mode", "threads")} == {
        "model": name, "phase": "prefill", "batch": BATCH, "seq": SEQ, "dtype": "fp32",
        "mode": "real", "threads": 1}
    assert meta["torch_version"] == torch.__version__ and meta["captured_on"]
    assert meta["sum_measured_s"] == pytest.approx(sum(op.measured_s for op in trace.ops))
    assert 0 < meta["sum_measured_s"] < meta["measured_wall_s"]


def test_gemm_flops_equal_2_tokens_weights(captured):
    """GEMM FLOPs = 2 * tokens * (elements of every Linear / Conv1D weight, lm_head included)."""
    _, trace, model = captured
    weights = sum(_gemm_modules(model).values())
    gemm_flops = sum(op.flops for op in trace.ops if op.category == "gemm")
    assert gemm_flops == 2 * TOKENS * weights


def test_gemms_are_attributed_to_their_modules(captured):
    _, trace, model = captured
    modules = _gemm_modules(model)
    gemms = [op for op in trace.ops if op.category == "gemm"]
    assert sorted(op.module for op in gemms) == sorted(modules)
    for op in gemms:
        assert op.flops == 2 * TOKENS * modules[op.module]
        assert op.attrs["b"] * op.attrs["m"] == TOKENS


def test_gemm_flops_agree_with_torch_flop_counter(captured):
    """torch counts mm/addmm like we do, and 0 for the CPU flash-attention op."""
    name, trace, model = captured
    ids = torch.randint(0, model.config.vocab_size, (BATCH, SEQ))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(ids)
    gemm_flops = sum(op.flops for op in trace.ops if op.category == "gemm")
    assert counter.get_total_flops() == gemm_flops


def test_attention_ops_are_causal_with_model_shapes(captured):
    name, trace, model = captured
    path, h_q, h_kv, d = ATTENTION[name]
    attention = [op for op in trace.ops if op.category == "attention"]
    num_layers = model.config.num_hidden_layers
    assert [op.module for op in attention] == [path.format(i) for i in range(num_layers)]
    for op in attention:
        assert op.name == "aten::_scaled_dot_product_flash_attention_for_cpu"
        assert {k: op.attrs[k] for k in ("b", "h_q", "h_kv", "s_q", "s_k", "d", "causal")} == {
            "b": BATCH, "h_q": h_q, "h_kv": h_kv, "s_q": SEQ, "s_k": SEQ, "d": d, "causal": True}
        assert op.flops == 4 * BATCH * h_q * d * SEQ * (SEQ + 1) // 2


def test_module_paths_name_submodules(captured):
    name, trace, _ = captured
    expected = {"gpt2-tiny": "transformer.h.0.attn.c_attn",
                "llama-tiny": "model.layers.0.self_attn.q_proj"}[name]
    assert expected in {op.module for op in trace.ops}


def test_round_trip_through_gzip_json(captured, tmp_path):
    _, trace, _ = captured
    path = write_trace(trace, tmp_path / "trace.json.gz")
    assert read_trace(path) == trace


def test_capture_is_deterministic():
    def structure(trace):
        return [(op.name, op.category, op.inputs, op.outputs, op.deps, op.flops, op.bytes_read,
                 op.bytes_written, op.module, dict(op.attrs)) for op in trace.ops]

    first, second = (capture_model("llama-tiny", batch=1, seq=8) for _ in range(2))
    assert structure(first) == structure(second)


def test_repeat_takes_median_times_of_identical_runs():
    trace = capture_model("gpt2-tiny", batch=1, seq=8, warmup=0, repeat=3)
    assert trace.meta["repeat"] == 3 and trace.meta["unrecorded_wall_s"] is None
    assert all(op.measured_s > 0 for op in trace.ops)


def test_threads_are_restored():
    before = torch.get_num_threads()
    capture_model("gpt2-tiny", batch=1, seq=4, threads=1)
    assert torch.get_num_threads() == before


class _InPlaceThenView(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 3, bias=False)
        self.bias = nn.Parameter(torch.zeros(3))

    def forward(self, x):  # x: (8,)
        y = x * 2  # 0 mul: fresh y
        y.add_(1)  # 1 add_: writes y in place
        v = y.view(2, 4)  # 2 view: aliases y
        out = self.proj(v)  # 3 t (view of the weight), 4 mm: reads y, last written by add_
        y.mul_(3)  # 5 mul_: writes y, after add_ wrote it and mm read it
        return out + self.bias  # 6 add: bias (3,) broadcast over (2, 3)


def test_dependencies_follow_storage_through_views_and_in_place_ops():
    trace = capture_module(_InPlaceThenView(), (torch.randn(8),), name="inplace")
    assert [(op.name, op.category, op.deps, op.module) for op in trace.ops] == [
        ("aten::mul", "elementwise", (), ""),
        ("aten::add_", "elementwise", (0,), ""),
        ("aten::view", "view", (1,), ""),
        ("aten::t", "view", (), "proj"),
        ("aten::mm", "gemm", (1,), "proj"),
        ("aten::mul_", "elementwise", (1, 4), ""),
        ("aten::add", "elementwise", (4,), ""),
    ]
    add_, mm, add = trace.ops[1], trace.ops[4], trace.ops[6]
    assert (add_.flops, add_.bytes_read, add_.bytes_written) == (8, 8 * 4, 8 * 4)
    # host_calls 0: the mm is F.linear's second aten op, after its t (module doc of host_calls)
    assert mm.attrs == {"b": 1, "m": 2, "n": 3, "k": 4, "b_layout": "nk", "host_calls": 0}
    assert mm.flops == 2 * 2 * 3 * 4
    assert (add.bytes_read, add.bytes_written) == ((6 + 3) * 4, 6 * 4)  # bias counted once


class _Calls(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 3, bias=False)

    def forward(self, x):  # x: (2, 4)
        n = x.size(0)  # a Python-level torch call that issues no aten op
        y = x * n  # Tensor.__mul__: aten::mul
        return self.proj(y)  # F.linear: one call, two aten ops (t, mm)


def test_ops_carry_the_python_level_torch_calls_that_led_to_them():
    trace = capture_module(_Calls(), (torch.randn(2, 4),), name="calls")
    # mul: the forward's torch.no_grad() (_set_grad_enabled), x.size, x * n; t: F.linear; mm:
    # issued by F.linear from C++, no call of its own
    assert [(op.name, op.attrs["host_calls"]) for op in trace.ops] == [
        ("aten::mul", 3), ("aten::t", 1), ("aten::mm", 0)]


class _Mix(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.ln = nn.LayerNorm(4)

    def forward(self, idx):  # idx: (2, 3) int64
        return torch.softmax(nn.functional.gelu(self.ln(self.emb(idx))), dim=-1)  # (2, 3, 4)


def test_cost_formulas_of_common_ops():
    trace = capture_module(_Mix(), torch.zeros(2, 3, dtype=torch.int64))
    n = 2 * 3 * 4  # output elements of every op; fp32 = 4 bytes, int64 = 8
    assert [(op.name, op.category, op.flops, op.bytes_read, op.bytes_written, op.dtype)
            for op in trace.ops] == [
        ("aten::embedding", "embedding", 0, n * 4 + 6 * 8, n * 4, "fp32"),  # gathered rows
        ("aten::native_layer_norm", "norm", 8 * n, n * 4 + 2 * 4 * 4, n * 4 + 2 * 6 * 4, "fp32"),
        ("aten::gelu", "elementwise", 8 * n, n * 4, n * 4, "fp32"),
        ("aten::_softmax", "reduction", 12 * n, n * 4, n * 4, "fp32"),
    ]
    # host_calls 2: the forward's torch.no_grad() and F.embedding
    assert trace.ops[0].attrs == {"num_indices": 6, "vocab": 10, "d": 4, "host_calls": 2}
    assert [op.deps for op in trace.ops] == [(), (0,), (1,), (2,)]


def test_causal_pairs():
    assert causal_pairs(4, 4) == causal_pairs(4, 4, align="top_left") == 10
    assert causal_pairs(2, 4) == 3 + 4  # queries at positions 2, 3 of 4 keys
    assert causal_pairs(2, 4, align="top_left") == 1 + 2
    assert causal_pairs(1, 5) == 5


def test_bad_phase_is_an_input_error():
    with pytest.raises(InputError, match="unknown phase"):
        capture_module(_Mix(), torch.zeros(2, 3, dtype=torch.int64), phase="decode")


def test_unknown_model_names_the_known_ones():
    with pytest.raises(InputError) as error:
        capture_model("falcon")
    assert error.value.field == "--model"
    assert all(name in str(error.value) for name in MODELS)


def test_misspelled_model_suggests_the_closest():
    with pytest.raises(InputError, match="did you mean llama-2-7b"):
        capture_model("llama2-7b")


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"batch": 0}, "--batch"),
    ({"seq": 0}, "--seq"),
    ({"seq": 513}, "--seq"),  # gpt2-tiny has 512 positions
    ({"seq": 2.5}, "--seq"),
    ({"dtype": "int8"}, "--dtype"),
    ({"threads": 0}, "--threads"),
    ({"batch": 1024, "seq": 512}, "--batch"),  # too many tokens for a real run
])
def test_bad_arguments_are_input_errors(kwargs, field):
    with pytest.raises(InputError) as error:
        capture_model("gpt2-tiny", **kwargs)
    assert error.value.field == field


class _Conv(nn.Module):
    def __init__(self, groups: int):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, kernel_size=3, padding=1, groups=groups)

    def forward(self, x):  # x: (2, 4, 16, 16) -> (2, 8, 16, 16)
        return self.conv(x)


@pytest.mark.parametrize("groups", [1, 2])
def test_convolution_flops_agree_with_torch_flop_counter(groups):
    """Forward 2 x N x 16 x 16 positions x C_out x (C_in / g) x 3 x 3; backward (the weight's
    gradient only: x needs none) the same. torch.utils.flop_counter agrees on the forward, and on
    the backward for g = 1 (its weight-gradient formula ignores groups: g times too many)."""
    module, x = _Conv(groups), torch.randn(2, 4, 16, 16)
    trace = capture_module(module, (x,), phase="train", loss_fn=lambda y: y.sum())
    conv = [op for op in trace.ops if op.attrs.get("conv")]
    forward = 2 * (2 * 16 * 16) * 8 * (4 // groups) * 9
    assert [(op.phase, op.flops) for op in conv] == [("forward", forward), ("backward", forward)]
    shape = {k: v for k, v in conv[0].attrs.items() if k != "host_calls"}
    assert shape == {"b": 1, "m": 2 * 16 * 16, "n": 8, "k": (4 // groups) * 9, "conv": True}
    counter = FlopCounterMode(display=False)
    with counter:
        y = module(x)
    assert counter.get_total_flops() == forward
    with counter:  # counts afresh
        y.sum().backward()
    if groups == 1:
        assert counter.get_total_flops() == conv[1].flops


class _Layouts(nn.Module):
    def forward(self, x):  # x: (4, 6)
        a = x.t().contiguous()  # a strided read: the copy's kernel gathers columns
        b = x.contiguous()  # already dense: no op
        return a.sum() + (b * 2).sum() + x[:, :3].exp().sum()  # a slice of rows is strided


def test_non_dense_inputs_of_copies_and_elementwise_ops_are_marked():
    trace = capture_module(_Layouts(), torch.randn(4, 6))
    marked = {op.name for op in trace.ops if op.attrs.get("contiguous") is False}
    assert marked == {"aten::clone", "aten::exp"}
    assert all("contiguous" not in op.attrs for op in trace.ops if op.name == "aten::mul")

def test_gemms_record_how_b_is_stored():
    # F.linear multiplies by its weight's transpose (n x k rows); GPT-2's Conv1D by a k x n one
    x, w, b = torch.randn(4, 8), torch.randn(16, 8), torch.randn(16)
    with OpRecorder() as rec, torch.no_grad():
        torch.nn.functional.linear(x, w, b)
        Conv1D(16, 8)(x)
        torch.bmm(torch.randn(2, 4, 8), torch.randn(2, 16, 8).transpose(1, 2))
        torch.bmm(torch.randn(2, 4, 8), torch.randn(2, 8, 16))
    layouts = [op.attrs.get("b_layout") for op in rec.ops if op.category == "gemm"]
    assert layouts == ["nk", "kn", "nk", "kn"]
