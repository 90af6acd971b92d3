"""Data parallel (DDP buckets, ZeRO), expert parallel and full recomputation transforms.

Tiny hand-built programs with hand-computed buckets and activation bytes, and invariants on fake
captures of llama-tiny and mixtral-tiny (b = 2, s = 16: T = 32 tokens; mixtral-tiny E = 4, k = 2,
h = 128, fp32). Each StageProgram is built here from the trace's phases, not by parallelize().
"""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from sim.cluster.workload import ParallelPlan, StageProgram
from sim.errors import InputError
from sim.trace import Op, TensorMeta, check_graph
from workloads.capture import capture_model
from workloads.parallel.data import apply_data_parallel
from workloads.parallel.expert import apply_expert_parallel
from workloads.parallel.recompute import apply_recompute, layer_of

MEMORY = {"weights": 8.0, "gradients": 8.0, "optimizer": 16.0, "activations": 4.0}


def _ids(start: int = 10**6):
    counter = itertools.count(start)
    return lambda: next(counter)


def _program(trace) -> StageProgram:
    by_phase = {p: tuple(op for op in trace.ops if op.phase == p)
                for p in ("forward", "backward", "optimizer")}
    return StageProgram(stage=0, forward=by_phase["forward"], backward=by_phase["backward"],
                        step=by_phase["optimizer"], memory_bytes=dict(MEMORY))


@pytest.fixture(scope="module")
def llama():
    return capture_model("llama-tiny", phase="train", batch=2, seq=16, mode="fake")


@pytest.fixture(scope="module")
def mixtral():
    return capture_model("mixtral-tiny", phase="train", batch=2, seq=16, mode="fake")


def _collectives(ops, kind=None):
    return [op for op in ops if op.category == "collective"
            and (kind is None or op.attrs["collective"] == kind)]


# --- data parallel: a hand-built stage ------------------------------------------------------


def _toy_stage() -> StageProgram:
    """Backward b10 -> b11 -> b12 -> b13 produces the gradients of p3, p2, p1, p0 in turn
    (fp32: 400, 400, 1200, 100 bytes); each parameter has a step-count op and an update op."""
    sizes = {"p0": 25, "p1": 300, "p2": 100, "p3": 100}
    ready = {"p3": 10, "p2": 11, "p1": 12, "p0": 13}
    backward = tuple(Op(id=i, name="aten::mm", category="gemm", phase="backward",
                        deps=(i - 1,) if i > 10 else ()) for i in range(10, 14))
    step, next_id = [], 100
    for name in ("p0", "p1", "p2", "p3"):  # model.parameters() order
        param = TensorMeta((sizes[name],), "fp32")
        attrs = {"optimizer": "adamw", "param": name}
        step.append(Op(id=next_id, name="aten::add_", category="elementwise",
                       phase="optimizer", inputs=(TensorMeta((), "fp32"),),
                       attrs={**attrs, "host_scalar": True}))
        step.append(Op(id=next_id + 1, name="aten::lerp_", category="elementwise",
                       phase="optimizer", flops=4.0 * sizes[name], bytes_read=8.0 * sizes[name],
                       bytes_written=4.0 * sizes[name], deps=(ready[name],),
                       inputs=(param, param), outputs=(param,), attrs=attrs))
        next_id += 2
    return StageProgram(stage=0, forward=(), backward=backward, step=tuple(step),
                        memory_bytes=dict(MEMORY))


def test_dp1_returns_the_program_unchanged():
    stage = _toy_stage()
    assert apply_data_parallel(stage, ParallelPlan(dp=1), _ids()) is stage


def test_buckets_fill_in_gradient_order_up_to_the_cap():
    out = apply_data_parallel(_toy_stage(), ParallelPlan(dp=2, bucket_bytes=1000), _ids(500))
    # p3 + p2 = 800 B (p1 would overflow), p1 alone (1200 B > cap), p0
    assert [(op.id, op.name) for op in out.backward] == [
        (10, "aten::mm"), (11, "aten::mm"), (500, "nccl:allreduce"), (12, "aten::mm"),
        (501, "nccl:allreduce"), (13, "aten::mm"), (502, "nccl:allreduce")]
    reductions = _collectives(out.backward)
    assert [op.attrs["bytes"] for op in reductions] == [800, 1200, 100]
    assert [op.attrs["params"] for op in reductions] == [2, 1, 1]
    assert [op.deps for op in reductions] == [(10, 11), (12,), (13,)]
    for op in reductions:
        assert (op.stream, op.phase, op.attrs["group"]) == (1, "backward", "dp")
        assert op.attrs["last_microbatch"] is True
    waits = {op.attrs["param"]: op.deps[-1] for op in out.step if op.name == "aten::lerp_"}
    assert waits == {"p3": 500, "p2": 500, "p1": 501, "p0": 502}
    assert out.memory_bytes == MEMORY


def test_zero1_reduce_scatters_shards_the_optimizer_and_gathers_the_parameters():
    out = apply_data_parallel(_toy_stage(), ParallelPlan(dp=4, zero=1, bucket_bytes=1000),
                              _ids(500))
    assert [op.attrs["collective"] for op in _collectives(out.backward)] == ["reducescatter"] * 3
    lerps = [op for op in out.step if op.name == "aten::lerp_"]
    assert [op.flops for op in lerps] == [25.0, 300.0, 100.0, 100.0]  # 4 numel / 4 ranks
    assert lerps[1].inputs[0].shape == (75,)
    gather = out.step[-1]
    assert (gather.name, gather.stream, gather.attrs["group"]) == ("nccl:allgather", 0, "dp")
    assert gather.attrs["bytes"] == 4 * (25 + 300 + 100 + 100)
    assert set(gather.deps) == {op.id for op in lerps}
    assert out.memory_bytes == {**MEMORY, "optimizer": 4.0}


def test_zero2_reduces_every_microbatch_and_shards_gradients():
    out = apply_data_parallel(_toy_stage(), ParallelPlan(dp=4, zero=2), _ids(500))
    (reduction,) = _collectives(out.backward)  # 2100 B in one 25 MiB bucket
    assert reduction.attrs["last_microbatch"] is False
    assert out.memory_bytes == {**MEMORY, "optimizer": 4.0, "gradients": 2.0}


# --- data parallel: a captured model --------------------------------------------------------


def _param_bytes(step) -> dict[str, float]:
    return {op.attrs["param"]: max(t.nbytes for t in op.inputs)
            for op in step if not op.attrs.get("host_scalar")}


def test_every_parameter_is_in_exactly_one_bucket(llama):
    program = _program(llama)
    cap = 64 * 2**10
    out = apply_data_parallel(program, ParallelPlan(dp=8, bucket_bytes=cap), _ids())
    check_graph(out.forward + out.backward)
    sizes = _param_bytes(program.step)
    assert sum(sizes.values()) == 4 * llama.meta["params"]
    buckets = _collectives(out.backward, "allreduce")
    assert sum(b.attrs["params"] for b in buckets) == len(sizes) == 21
    assert sum(b.attrs["bytes"] for b in buckets) == sum(sizes.values())
    # each optimizer op waits for exactly one bucket, the same for all ops of a parameter
    bucket_ids = {b.id for b in buckets}
    waits = {}
    for op in out.step:
        (wait,) = [d for d in op.deps if d in bucket_ids]
        assert waits.setdefault(op.attrs["param"], wait) == wait
    assert Counter(waits.values()) == {b.id: b.attrs["params"] for b in buckets}
    # buckets hold at most the cap (unless one parameter alone exceeds it) and are maximal
    for bucket, following in zip(buckets, buckets[1:], strict=False):
        first_next = min(p for p, w in waits.items() if w == following.id)
        assert bucket.attrs["bytes"] <= cap or bucket.attrs["params"] == 1
        assert bucket.attrs["bytes"] + sizes[first_next] > cap
    # a collective comes right after the last op it waits for
    position = {op.id: i for i, op in enumerate(out.backward)}
    for b in buckets:
        assert position[b.id] == max(position[d] for d in b.deps) + 1


def test_zero3_gathers_each_layer_before_its_forward_and_backward(llama):
    program = _program(llama)
    out = apply_data_parallel(program, ParallelPlan(dp=4, zero=3), _ids())
    check_graph(out.forward + out.backward)
    sizes = _param_bytes(program.step)
    layer_bytes = Counter()
    for name, nbytes in sizes.items():
        layer_bytes[layer_of(name) or ""] += nbytes
    for ops in (out.forward, out.backward):
        gathers = _collectives(ops, "allgather")
        assert {g.module: g.attrs["bytes"] for g in gathers} == layer_bytes
        assert len(gathers) == 3  # root (embedding, norm, head) + 2 layers
        for g in gathers:
            assert (g.stream, g.deps, g.attrs["group"]) == (1, (), "dp")
            first = next(op for op in ops if (layer_of(op.module) or "") == g.module
                         and op.category != "collective")
            assert g.id in first.deps
            assert ops.index(g) < ops.index(first)
    assert not _collectives(out.step)  # no post-step gather: the next forward gathers
    assert out.memory_bytes == {"weights": 2.0, "gradients": 2.0, "optimizer": 4.0,
                                "activations": 4.0}
    optimizer_flops = sum(op.flops for op in program.step)
    assert sum(op.flops for op in out.step) == pytest.approx(optimizer_flops / 4)


# --- expert parallel ------------------------------------------------------------------------


def test_ep_must_divide_the_experts(mixtral):
    with pytest.raises(InputError) as error:
        apply_expert_parallel(_program(mixtral).forward, ParallelPlan(dp=3, ep=3), _ids())
    assert str(error.value) == "--ep: 3 does not divide the 4 experts of model.layers.0.mlp"


def test_ep1_keeps_the_ops(mixtral):
    forward = _program(mixtral).forward
    assert apply_expert_parallel(forward, ParallelPlan(), _ids()) == list(forward)


def _experts(ops):
    return [op for op in ops if ".experts" in op.module and op.category != "collective"]


def test_ep_keeps_e_over_ep_experts_on_all_tokens(mixtral):
    program, plan = _program(mixtral), ParallelPlan(dp=2, ep=2)
    forward = apply_expert_parallel(program.forward, plan, _ids())
    backward = apply_expert_parallel(program.backward, plan, _ids(2 * 10**6))
    check_graph(forward + backward)
    for before, after in ((program.forward, forward), (program.backward, backward)):
        a2a = _collectives(after)
        assert len(a2a) == 4  # dispatch + combine, 2 layers
        for op in a2a:
            assert op.attrs == {"collective": "alltoall", "group": "ep", "role": op.attrs["role"],
                                "bytes": 32 * 2 * 128 * 4}  # T k h x 4 bytes
            assert op.stream == 0
        # the same token work (T k = 64 slots per layer) on 2 of the 4 experts
        assert sum(op.flops for op in _experts(after)) == pytest.approx(
            sum(op.flops for op in _experts(before)), rel=0.05)
        assert sum(op.bytes_total for op in _experts(after)) < sum(
            op.bytes_total for op in _experts(before))
    gemms = [op for op in _experts(forward) if op.category == "gemm"]
    assert len(gemms) == 2 * 2 * 2  # 2 GEMMs x 2 experts x 2 layers
    assert {op.attrs["m"] for op in gemms} == {32}  # 64 slots over 2 experts
    # forward FLOPs of the expert GEMMs are exactly those of one device
    before_gemms = [op for op in _experts(program.forward) if op.category == "gemm"]
    assert sum(op.flops for op in gemms) == sum(op.flops for op in before_gemms)
    # the router is not sharded
    router = [op for op in program.forward if op.module.endswith(".mlp.gate")]
    assert [op for op in forward if op.module.endswith(".mlp.gate")] == router


def test_ep_dispatch_precedes_and_combine_follows_the_experts(mixtral):
    forward = apply_expert_parallel(_program(mixtral).forward, ParallelPlan(dp=2, ep=2), _ids())
    layer0 = [op for op in forward if op.module.startswith("model.layers.0.mlp.experts")]
    assert layer0[0].attrs["role"] == "dispatch" and layer0[-1].attrs["role"] == "combine"
    inside = {op.id for op in layer0[1:-1]}
    assert layer0[-1].deps[0] in inside
    for op in layer0[1:-1]:  # expert ops read tokens only through the dispatch
        assert all(d in inside or d == layer0[0].id for d in op.deps)
    readers = [op.id for op in forward if op.id not in inside
               and any(d in inside for d in op.deps)]
    assert readers == [layer0[-1].id]  # the rest of the model reads the experts' output combined


def test_ep_shards_the_expert_parameters(mixtral):
    step = apply_expert_parallel(_program(mixtral).step, ParallelPlan(dp=4, ep=4), _ids())
    shapes = {op.attrs["param"]: op.inputs[0].shape for op in step if op.name == "aten::lerp_"}
    assert shapes["model.layers.0.mlp.experts.gate_up_proj"] == (1, 512, 128)
    assert shapes["model.layers.0.mlp.gate.weight"] == (4, 128)


def test_dp_with_ep_reduces_expert_gradients_over_their_replicas(mixtral):
    program, plan = _program(mixtral), ParallelPlan(dp=4, ep=2)
    program = StageProgram(0, tuple(apply_expert_parallel(program.forward, plan, _ids())),
                           tuple(apply_expert_parallel(program.backward, plan, _ids(2 * 10**6))),
                           tuple(apply_expert_parallel(program.step, plan, _ids(3 * 10**6))))
    out = apply_data_parallel(program, plan, _ids(4 * 10**6))
    groups = Counter()
    for op in _collectives(out.backward, "allreduce"):
        groups[op.attrs["group"]] += op.attrs["bytes"]
    experts = 2 * 2 * (512 * 128 + 128 * 256) * 4  # 2 layers, 2 tensors of 2 experts, fp32
    assert groups["dp_ep"] == experts
    assert groups["dp"] == 4 * program_params(program) - experts


def program_params(program) -> int:
    return sum(max(t.numel for t in op.inputs) for op in program.step
               if op.name == "aten::lerp_")


# --- recomputation --------------------------------------------------------------------------


def _toy_layers() -> StageProgram:
    """Embedding 0, layer 0 = ops 1, 2, layer 1 = ops 3, 4, head 5; backward 10..14."""
    def fwd(i, module, deps, written):
        return Op(id=i, name="aten::mm", category="gemm", flops=10.0 * i, module=module,
                  deps=deps, bytes_written=written)

    def bwd(i, module, deps):
        return Op(id=i, name="aten::mm", category="gemm", phase="backward", module=module,
                  deps=deps)

    forward = (fwd(0, "model.embed", (), 100), fwd(1, "model.layers.0.a", (0,), 50),
               fwd(2, "model.layers.0.b", (1,), 70), fwd(3, "model.layers.1.a", (2,), 60),
               fwd(4, "model.layers.1.b", (3,), 80), fwd(5, "lm_head", (4,), 30))
    backward = (bwd(10, "lm_head", (5,)), bwd(11, "model.layers.1.b", (10, 3, 4)),
                bwd(12, "model.layers.1.a", (11, 2)), bwd(13, "model.layers.0.b", (12, 1, 2)),
                bwd(14, "model.layers.0.a", (13, 0)))
    return StageProgram(0, forward, backward, memory_bytes=dict(MEMORY))


def test_layer_of():
    assert layer_of("model.layers.3.mlp.experts") == "model.layers.3"
    assert layer_of("transformer.h.12") == "transformer.h.12"
    assert layer_of("lm_head") is None


def test_recompute_copies_each_layer_before_its_backward():
    out = apply_recompute(_toy_layers(), _ids(100))
    assert [(op.id, op.deps) for op in out.backward] == [
        (10, (5,)),
        (100, (2,)), (101, (100,)),  # layer 1 again, from its kept input (op 2)
        (11, (10, 100, 101)), (12, (11, 2)),
        (102, (0,)), (103, (102,)),  # layer 0 again, from the embedding
        (13, (12, 102, 103)), (14, (13, 0))]
    copies = [op for op in out.backward if op.attrs.get("recompute")]
    assert [(op.flops, op.phase) for op in copies] == [
        (30.0, "backward"), (40.0, "backward"), (10.0, "backward"), (20.0, "backward")]
    # kept: head's input... saved non-layer output 5 (30) + layer inputs 0 (100), 2 (70);
    # plus the largest layer's saved tensors: layer 1, ops 3 + 4 (140)
    assert out.memory_bytes == {**MEMORY, "activations": 30 + 100 + 70 + 140}


def test_recompute_doubles_the_layers_forward_flops(llama):
    program = _program(llama)
    out = apply_recompute(program, _ids())
    check_graph(out.forward + out.backward)
    layer_ops = [op for op in program.forward if layer_of(op.module)]
    copies = [op for op in out.backward if op.attrs.get("recompute")]
    assert len(copies) == len(layer_ops)
    assert sum(op.flops for op in out.backward) == pytest.approx(
        sum(op.flops for op in program.backward) + sum(op.flops for op in layer_ops))
    own = {op.id: layer_of(op.module) for op in layer_ops}
    for op in out.backward:  # a layer's backward reads the recomputed, not the saved, tensors
        if layer_of(op.module) and not op.attrs.get("recompute"):
            assert not any(own.get(d) == layer_of(op.module) for d in op.deps)
    assert out.memory_bytes["activations"] < sum(op.bytes_written for op in program.forward)
