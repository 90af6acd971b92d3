"""Fake capture of the built-in models at full width, FLOP rules, MoE routing, HF config files,
and the checks on a capture request."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sim.errors import InputError
from workloads import MODELS, capture_model, model_config, tokens_per_expert
from workloads.models import is_encoder

PHASES = ("prefill", "decode", "train")
BUILT_IN = [(m, p) for m in MODELS for p in PHASES
            if not (p == "decode" and is_encoder(model_config(m)))]


@pytest.mark.parametrize(("name", "phase"), BUILT_IN, ids=lambda x: x)
def test_every_built_in_model_captures_every_phase_in_fake_mode(name, phase):
    """Real widths, one layer: the attention op has the model's heads and head dim."""
    config = model_config(name)
    trace = capture_model(name, phase=phase, batch=2, seq=16, mode="fake", layers=1,
                          dtype="bf16")
    assert {k: trace.meta[k] for k in ("model", "phase", "mode", "layers", "num_layers")} == {
        "model": name, "phase": phase, "mode": "fake", "layers": 1, "num_layers": 1}
    assert all(op.measured_s is None for op in trace.ops)
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    attention = [op for op in trace.ops if op.category == "attention" and op.phase == "forward"]
    if attention:  # GPT-2 and BERT train with dropout: CPU SDPA decomposes into bmm + softmax
        (op,) = attention
        s_q, s_k = (1, 17) if phase == "decode" else (16, 16)
        assert {k: op.attrs[k] for k in ("b", "h_q", "h_kv", "s_q", "s_k", "d")} == {
            "b": 2, "h_q": heads, "h_kv": kv_heads, "s_q": s_q, "s_k": s_k,
            "d": config.hidden_size // heads}
        assert op.attrs["causal"] is (phase != "decode" and not is_encoder(config))
    else:
        assert phase == "train" and name.startswith(("gpt2", "bert"))
    # the weights' GEMMs run in bf16 (CPU SDPA's math path, bmm, upcasts to fp32)
    assert {op.dtype for op in trace.ops if op.name in ("aten::mm", "aten::addmm")} == {"bf16"}


def _dense_rule(name, phase, seq, layers):
    """(GEMM FLOPs, all FLOPs, N = parameters outside the input embedding, T tokens)."""
    trace = capture_model(name, phase=phase, batch=1, seq=seq, mode="fake", layers=layers)
    config = model_config(name)
    n = trace.meta["params"] - config.vocab_size * config.hidden_size
    gemm = sum(op.flops for op in trace.ops if op.category == "gemm")
    return gemm, sum(op.flops for op in trace.ops), n, seq


def test_dense_forward_flops_follow_the_2n_rule():
    """Kaplan et al. 2020, Sec. 2.1: forward C = 2 N per token, N without embeddings. GEMMs are
    2 T x every weight matrix (norm weights, 2 x 4096 per layer, are not matrices); attention
    and the vector ops add a few percent at s = 512."""
    gemm, total, n, tokens = _dense_rule("llama-2-7b", "prefill", 512, 1)
    norms = 2 * 4096 + 4096  # two RMSNorm weights in the layer, one final
    assert gemm == 2 * tokens * (n - norms)
    assert total == pytest.approx(2 * n * tokens, rel=0.05)


def test_dense_training_flops_follow_the_6n_rule():
    """Training C = 6 N per token (Kaplan et al. 2020, Sec. 2.1): every GEMM's backward is two
    GEMMs of its size; the AdamW step adds ~13 FLOP per parameter, not per token."""
    gemm, total, n, tokens = _dense_rule("llama-2-7b", "train", 512, 1)
    norms = 2 * 4096 + 4096
    assert gemm == 6 * tokens * (n - norms)
    assert total == pytest.approx(6 * n * tokens, rel=0.05)


@pytest.mark.slow
def test_full_size_llama_2_7b_prefill_in_fake_mode():
    """Notes (capture.md): 27.06 TFLOP of matmuls against 2 N T = 27.6 over 2048 tokens."""
    trace = capture_model("llama-2-7b", batch=1, seq=2048, dtype="bf16", mode="fake")
    assert trace.meta["params"] == 6_738_415_616
    assert sum(op.category == "attention" for op in trace.ops) == 32
    gemm = sum(op.flops for op in trace.ops if op.category == "gemm")
    assert gemm == pytest.approx(2 * 6.74e9 * 2048, rel=0.03)


# -- MoE -------------------------------------------------------------------------------------

def test_balanced_and_skewed_routing_counts():
    assert tokens_per_expert(16, 2, 4) == [8, 8, 8, 8]
    assert tokens_per_expert(5, 2, 4) == [3, 3, 2, 2]
    skewed = tokens_per_expert(16, 2, 4, skew=1.0)
    assert sum(skewed) == 32 and skewed == sorted(skewed, reverse=True) and max(skewed) <= 16
    assert tokens_per_expert(16, 2, 4, skew=20.0) == [16, 16, 0, 0]  # a token's 2 experts differ


@pytest.mark.parametrize("skew", [None, 1.0])
def test_moe_experts_get_the_assumed_tokens(skew):
    """mixtral-tiny: E = 4, k = 2, h = 128, f = 256; T = 2 x 16 tokens."""
    trace = capture_model("mixtral-tiny", batch=2, seq=16, mode="fake", moe_skew=skew)
    counts = tokens_per_expert(32, 2, 4, skew or 0.0)
    assert trace.meta["moe"] == {"routing": "zipf" if skew else "balanced", "skew": skew or 0.0,
                                 "num_experts": 4, "top_k": 2, "num_tokens": 32,
                                 "tokens_per_expert": counts}
    gate_up = [op for op in trace.ops if op.category == "gemm" and op.attrs["n"] == 2 * 256
               and op.module == "model.layers.0.mlp.experts"]
    assert [op.attrs["m"] for op in gate_up] == [n for n in counts if n]
    expert_flops = sum(op.flops for op in trace.ops if op.category == "gemm"
                       and op.module.endswith("mlp.experts"))
    assert expert_flops == 2 * 32 * 2 * (3 * 128 * 256) * 2  # T k tokens x 3 matrices x 2 layers


def test_moe_skew_of_a_dense_model_is_an_input_error():
    with pytest.raises(InputError) as error:
        capture_model("llama-tiny", mode="fake", moe_skew=1.0)
    assert error.value.field == "--moe-skew"


# -- HF config files ----------------------------------------------------------------------------

_TINY_LLAMA = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
               "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
               "vocab_size": 512, "max_position_embeddings": 256}


def test_a_config_file_captures_like_a_built_in_model(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(_TINY_LLAMA))
    trace = capture_model(hf_config=path, phase="train", batch=1, seq=16, mode="fake")
    assert trace.meta["model"] == "llama" and trace.meta["hf_config"] == str(path)
    assert trace.meta["num_layers"] == 2
    gpt2 = tmp_path / "gpt2.json"  # GPT-2 names its fields n_embd, n_layer, n_head
    gpt2.write_text(json.dumps({"model_type": "gpt2", "n_embd": 64, "n_layer": 1, "n_head": 2,
                                "vocab_size": 512}))
    assert len(capture_model(hf_config=gpt2, batch=1, seq=8, mode="fake")) > 0


@pytest.mark.parametrize(("content", "field"), [
    ({k: v for k, v in _TINY_LLAMA.items() if k != "hidden_size"}, "hidden_size"),
    ({k: v for k, v in _TINY_LLAMA.items() if k != "intermediate_size"}, "intermediate_size"),
    ({k: v for k, v in _TINY_LLAMA.items() if k != "model_type"}, "model_type"),
    ({**_TINY_LLAMA, "model_type": "lama"}, "model_type"),
])
def test_a_config_missing_fields_names_the_file_and_field(tmp_path, content, field):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(content))
    with pytest.raises(InputError) as error:
        capture_model(hf_config=path, mode="fake")
    assert (error.value.source, error.value.field) == (str(path), field)


def test_unreadable_config_files_are_input_errors(tmp_path):
    with pytest.raises(InputError) as error:
        capture_model(hf_config=tmp_path / "missing.json")
    assert error.value.field == "--hf-config"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="malformed JSON"):
        capture_model(hf_config=bad)


# -- request checks ----------------------------------------------------------------------------

def test_gpt2_small_is_an_alias_of_gpt2():
    assert model_config("gpt2-small").to_dict() == model_config("gpt2").to_dict()


def test_a_real_run_that_does_not_fit_is_refused_with_an_estimate():
    with pytest.raises(InputError, match=r"needs about [\d.]+ GiB .*--fake") as error:
        capture_model("llama-2-70b", phase="train", batch=1, seq=16)
    assert error.value.field == "--model"


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"phase": "generate"}, "--phase"),
    ({"mode": "meta"}, "--fake"),
    ({"context": 8}, "--context"),  # only decode has a context
    ({"phase": "decode", "context": 2048}, "--context"),  # llama-tiny: 2048 positions
    ({"phase": "decode", "context": 0}, "--context"),
    ({"layers": 0}, "--layers"),
    ({"seq": 4096, "mode": "fake"}, "--seq"),
    ({"batch": 5000, "mode": "fake"}, "--batch"),
])
def test_bad_requests_name_the_flag(kwargs, field):
    with pytest.raises(InputError) as error:
        capture_model("llama-tiny", **kwargs)
    assert error.value.field == field


def test_a_name_and_a_config_file_together_are_an_input_error(tmp_path):
    with pytest.raises(InputError) as error:
        capture_model("gpt2", hf_config=tmp_path / "config.json")
    assert error.value.field == "--hf-config"


# -- the 70B benchmark ---------------------------------------------------------------------------

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "capture_70b.py"


@pytest.mark.slow
@pytest.mark.parametrize("case", ["70b-prefill", "70b-train"])
def test_70b_fake_capture_meets_its_time_and_memory_targets(case, tmp_path):
    """Whole process on a 2-core machine: prefill over 2048 tokens <= 10 s, <= 1 GiB; a training
    step <= 30 s, <= 1.5 GiB (measured 2025 on this project's 2-core VM: 4.6 s / 417 MiB and
    8.6 s / 459 MiB). The benchmark runs in its own small process: a child's peak RSS includes
    its parent's RSS at fork time, which would count this test process."""
    out = tmp_path / "result.json"
    done = subprocess.run([sys.executable, str(BENCHMARK), "--cases", case, "--json", str(out)],
                          capture_output=True, text=True)
    (result,) = json.loads(out.read_text())
    assert done.returncode == 0 and result["ok"], (result, done.stdout, done.stderr)
    assert result["num_ops"] > 6000
