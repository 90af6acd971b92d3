"""Retargeting per-parameter optimizer ops (CPU kernels) to foreach groups (GPU kernels)."""

from __future__ import annotations

from sim.retarget import foreach_optimizer
from sim.trace import Op, Trace, check_graph


def _adamw_trace(num_params: int) -> Trace:
    ops = [Op(id=0, name="aten::mm", category="gemm", flops=100.0, phase="backward")]
    for p in range(num_params):  # two steps per parameter, each reading the gradient (op 0)
        for step, name in enumerate(("aten::mul_", "aten::addcdiv_")):
            ops.append(Op(id=len(ops), name=name, category="elementwise", phase="optimizer",
                          flops=10.0, bytes_read=40.0, bytes_written=20.0,
                          deps=(0,) if step == 0 else (len(ops) - 1,),
                          attrs={"optimizer": "adamw", "param": f"w{p}"}))
    ops.append(Op(id=len(ops), name="aten::add", category="elementwise", deps=(len(ops) - 1,)))
    return Trace(tuple(ops))


def test_groups_each_step_over_all_parameters():
    trace = foreach_optimizer(_adamw_trace(40))
    names = [op.name for op in trace.ops]
    assert names == ["aten::mm", "aten::_foreach_mul_", "aten::_foreach_addcdiv_", "aten::add"]
    mul = trace.ops[1]
    assert mul.flops == 400.0 and mul.bytes_read == 1600.0 and mul.bytes_written == 800.0
    assert mul.num_kernels == 2  # 40 tensors, 36 per launch
    assert mul.deps == (0,) and trace.ops[2].deps == (mul.id,)
    assert trace.ops[3].deps == (trace.ops[2].id,)  # redirected from the last per-param op
    check_graph(trace.ops)


def test_work_is_conserved():
    before, after = _adamw_trace(7), foreach_optimizer(_adamw_trace(7))
    assert sum(op.flops for op in before.ops) == sum(op.flops for op in after.ops)
    assert sum(op.bytes_read for op in before.ops) == sum(op.bytes_read for op in after.ops)


def test_trace_without_optimizer_is_unchanged():
    trace = Trace((Op(id=0, name="aten::mm", category="gemm"),))
    assert foreach_optimizer(trace) is trace


def test_paged_kv_cache_moves_only_the_new_token():
    from sim.retarget import paged_kv_cache
    from sim.trace import TensorMeta

    cache, token = TensorMeta((2, 4, 100, 8), "bf16"), TensorMeta((2, 4, 1, 8), "bf16")
    cat = Op(id=0, name="aten::cat", category="copy", inputs=(cache, token),
             outputs=(TensorMeta((2, 4, 101, 8), "bf16"),), bytes_read=cache.nbytes + token.nbytes,
             bytes_written=cache.nbytes + token.nbytes, attrs={"kv_cache": "append"})
    other = Op(id=1, name="aten::mm", category="gemm", deps=(0,), bytes_read=10.0)
    paged = paged_kv_cache(Trace((cat, other)))
    assert paged.ops[0].bytes_read == paged.ops[0].bytes_written == 2 * 4 * 8 * 2
    assert paged.ops[1] is other and paged.meta["kv_cache"] == "paged"


def test_cuda_graphs_replace_per_op_dispatch_with_one_launch(toy_gpu):
    """A host-bound chain of 3 ops (t_pre 2 us, t_calc 1 us): eager, the host issues at 2, 4,
    6 us and the device ends at 7 us; as a graph, one launch (toy: 1 us) and 3 us of kernels."""
    import pytest

    from sim.cost import OpCost
    from sim.simulator import simulate

    ops = tuple(Op(id=i, name=f"k{i}", category="elementwise", deps=(i - 1,) if i else ())
                for i in range(3))
    costs = [OpCost(2e-6, 1e-6, 0.0, "memory")] * 3
    eager = simulate(Trace(ops), toy_gpu, costs=costs)
    graph = simulate(Trace(ops), toy_gpu, costs=costs, cuda_graphs=True)
    assert eager.total_s == pytest.approx(7e-6)
    assert toy_gpu.host.launch_s == pytest.approx(1e-6)
    assert graph.total_s == pytest.approx(4e-6)
    # a synchronizing op cannot be captured: it keeps its dispatch and starts a new graph
    synced = tuple(Op(id=i, name=f"k{i}", category="elementwise", deps=(i - 1,) if i else (),
                      sync=i == 1) for i in range(3))
    costs_synced = simulate(Trace(synced), toy_gpu, costs=costs, cuda_graphs=True)
    assert list(costs_synced.ops["t_pre_s"]) == pytest.approx([1e-6, 2e-6, 1e-6])
