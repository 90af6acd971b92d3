"""Tensor and pipeline parallelism as trace transforms (workloads.parallel): tiny fake captures,
exact FLOP, message and memory invariants."""

from __future__ import annotations

import pytest

from sim.cluster.workload import ParallelPlan
from sim.errors import InputError
from sim.trace import check_graph
from sim.units import DTYPE_BYTES
from workloads.capture import capture_model
from workloads.parallel import parallelize

B, S, H = 2, 16, 128  # batch, sequence, hidden of the -tiny models


def _capture(model: str, phase: str = "train"):
    return capture_model(model, phase=phase, batch=B, seq=S if phase != "decode" else 1,
                         context=S if phase == "decode" else None, mode="fake")


@pytest.fixture(scope="module")
def llama():
    return _capture("llama-tiny")


def _tp(ops, kind="allreduce"):
    return [op for op in ops if op.category == "collective" and op.attrs["collective"] == kind]


def _valid(workload) -> None:
    for stage in workload.stages:
        check_graph(stage.forward)
        check_graph([*stage.forward, *stage.backward])  # backward may read forward
        check_graph(stage.step)


def test_tp2_halves_every_sharded_gemm_and_attention(llama):
    source = {op.id: op for op in llama.ops}
    (stage,) = parallelize(llama, ParallelPlan(tp=2)).stages
    linears = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
               "lm_head")
    checked = 0
    for op in (*stage.forward, *stage.backward):
        if op.category in ("gemm", "attention") and op.module.endswith(linears + ("self_attn",)):
            assert op.flops == source[op.id].flops / 2, (op.id, op.name, op.module)
            checked += 1
    assert checked == 2 * (7 * 3 + 2) + 3  # 2 layers x (7 linears x 3 GEMMs + 2 attention) + head


def test_tp2_flops_halve_except_replicated_ops(llama):
    source = sum(op.flops for op in llama.ops if op.phase != "optimizer")
    (stage,) = parallelize(llama, ParallelPlan(tp=2)).stages
    split = sum(op.flops for op in (*stage.forward, *stage.backward))
    # norms, residual adds, the embedding and grad-input partial sums stay whole: a few %
    assert source / 2 < split < 0.52 * source


def test_tp2_allreduce_count_and_bytes(llama):
    (stage,) = parallelize(llama, ParallelPlan(tp=2)).stages
    hidden = B * S * H * DTYPE_BYTES["fp32"]
    fwd, bwd = _tp(stage.forward), _tp(stage.backward)
    # 2 per layer + embedding; + 2 of the cross entropy (per-token max and sum, fp32)
    assert sorted(op.attrs["bytes"] for op in fwd) == [B * S * 4] * 2 + [hidden] * 5
    assert [op.attrs["bytes"] for op in bwd] == [hidden] * 5  # 2 per layer + LM head
    assert all(op.attrs["group"] == "tp" and op.stream == 0 for op in (*fwd, *bwd))
    _valid(parallelize(llama, ParallelPlan(tp=2)))


def test_tp_allreduce_sits_between_row_linear_and_residual(llama):
    (stage,) = parallelize(llama, ParallelPlan(tp=2)).stages
    by_id = {op.id: op for op in stage.forward}
    reduce = next(op for op in _tp(stage.forward) if op.module == "model.layers.0.self_attn")
    assert [by_id[d].module for d in reduce.deps] == ["model.layers.0.self_attn.o_proj"]
    residual = next(op for op in stage.forward if reduce.id in op.deps)
    assert residual.module == "model.layers.0" and residual.name == "aten::add"
    assert not any(d in residual.deps for d in reduce.deps)


def test_tp_weights_and_optimizer_shrink(llama):
    full = parallelize(llama, ParallelPlan()).stages[0].memory_bytes
    half = parallelize(llama, ParallelPlan(tp=2)).stages[0].memory_bytes
    norms = (2 * 2 + 1) * H  # RMSNorm weights are replicated
    assert full["weights"] == llama.meta["params"] * 4
    assert half["weights"] == ((llama.meta["params"] - norms) / 2 + norms) * 4
    assert half["optimizer"] == half["weights"] / 4 * 8  # fp32 model: two fp32 moments
    assert half["activations"] < full["activations"]


def test_sequence_parallel_gathers_and_scatters(llama):
    (stage,) = parallelize(llama, ParallelPlan(tp=2, sequence_parallel=True)).stages
    hidden = B * S * H * 4
    assert [op.attrs["bytes"] for op in _tp(stage.forward, "allgather")] == [hidden] * 5
    assert [op.attrs["bytes"] for op in _tp(stage.forward, "reducescatter")] == [hidden] * 5
    assert len(_tp(stage.backward, "allgather")) == 4  # the LM head starts from split logits
    assert len(_tp(stage.backward, "reducescatter")) == 5
    norm = next(op for op in stage.forward if op.module == "model.layers.0.input_layernorm"
                and op.name == "aten::pow")
    assert norm.outputs[0].shape == (B, S // 2, H)


def test_pp2_partitions_ops_and_links_stages(llama):
    workload = parallelize(llama, ParallelPlan(pp=2))
    _valid(workload)
    ids = [op.id for st in workload.stages for op in (*st.forward, *st.backward, *st.step)
           if op.category != "send_recv"]
    assert sorted(ids) == sorted(op.id for op in llama.ops)
    first, last = workload.stages
    hidden = B * S * H * 4
    assert first.forward[-1].attrs == {"direction": "send", "peer": 1, "bytes": hidden}
    assert last.forward[0].attrs == {"direction": "recv", "peer": 0, "bytes": hidden}
    assert last.backward[-1].attrs == {"direction": "send", "peer": 0, "bytes": hidden}
    assert first.backward[0].attrs == {"direction": "recv", "peer": 1, "bytes": hidden}
    assert first.forward[0].module == "model.embed_tokens"
    assert {op.module for op in last.forward} >= {"model.norm", "lm_head"}
    assert first.backward[-2].module == "model.embed_tokens"  # its gradient, then nothing sent
    total = sum(st.memory_bytes["weights"] for st in workload.stages)
    assert total == llama.meta["params"] * 4


def test_tp_pp_with_sequence_parallel_sends_a_sequence_shard(llama):
    workload = parallelize(llama, ParallelPlan(tp=2, pp=2, sequence_parallel=True))
    _valid(workload)
    assert workload.stages[0].forward[-1].attrs["bytes"] == B * S * H * 4 / 2


def test_meta_counts_iteration(llama):
    workload = parallelize(llama, ParallelPlan(tp=2, microbatches=4))
    fwd_bwd = sum(op.flops for op in llama.ops if op.phase in ("forward", "backward"))
    assert workload.meta["model_flops"] == fwd_bwd * 4
    assert workload.meta["tokens"] == B * S * 4
    assert workload.meta["params"] == llama.meta["params"]


@pytest.mark.parametrize(("plan", "message"), [
    (ParallelPlan(pp=3), "--pp: 3 does not divide the 2 layers"),
    (ParallelPlan(tp=4), "--tp: 4 does not divide the 2 key/value heads of "
                         "model.layers.0.self_attn"),
    (ParallelPlan(tp=3), "--tp: 3 does not divide the 128 output features of "
                         "model.layers.0.self_attn.q_proj"),
])
def test_divisibility_errors(llama, plan, message):
    with pytest.raises(InputError) as err:
        parallelize(llama, plan)
    assert str(err.value) == message


@pytest.mark.parametrize(("model", "column", "row"), [
    ("gpt2-tiny", ("attn.c_attn", "mlp.c_fc"), ("attn.c_proj", "mlp.c_proj")),
    ("bert-tiny", ("attention.self.query", "intermediate.dense"),
     ("attention.output.dense", "layer.0.output.dense")),
])
def test_gpt2_and_bert_column_and_row_linears(model, column, row):
    trace = _capture(model)
    source = {op.id: op for op in trace.ops}
    workload = parallelize(trace, ParallelPlan(tp=2, pp=2))
    _valid(workload)
    fwd = [op for st in workload.stages for op in st.forward if op.category == "gemm"]
    for op in fwd:
        if op.module.endswith(column) and ".0." in op.module:
            assert op.attrs["n"] == source[op.id].attrs["n"] // 2
        if op.module.endswith(row) and ".0." in op.module:
            assert op.attrs["k"] == source[op.id].attrs["k"] // 2
    hidden = B * S * H * 4
    for stage in workload.stages:
        assert all(op.attrs["bytes"] in (hidden, B * S * 4) for op in _tp(stage.forward))


def test_inference_trace_keeps_a_kv_cache():
    trace = _capture("llama-tiny", "decode")
    workload = parallelize(trace, ParallelPlan(tp=2, pp=2))
    _valid(workload)
    for stage in workload.stages:
        assert not stage.backward and not stage.step
        # one layer per stage: 2 (K, V) x b x s_k x a_kv/t x d x 4 bytes
        assert stage.memory_bytes["kv_cache"] == 2 * B * (S + 1) * 1 * 32 * 4
        assert stage.memory_bytes["gradients"] == 0
    assert sum(st.memory_bytes["weights"] for st in workload.stages) == (
        (trace.meta["params"] - 5 * H) / 2 + 5 * H) * 4
    gather = _tp(workload.stages[-1].forward, "allgather")
    assert [op.attrs["bytes"] for op in gather] == [B * 1024 * 4]  # the logits, for sampling
