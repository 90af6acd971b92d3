"""Kernel fusion: a chain of elementwise ops becomes one kernel that moves only what leaves it."""

import pytest

from sim.fusion import fuse_elementwise
from sim.trace import Op, Trace, check_graph

MB = 1e6


def _op(i, category, deps=(), module="m", read=MB, written=MB, flops=10.0, phase="forward"):
    return Op(id=i, name=f"aten::op{i}", category=category, deps=tuple(deps), module=module,
              bytes_read=read, bytes_written=written, flops=flops, phase=phase)


def test_chain_keeps_only_external_traffic():
    # gemm -> a -> b -> c -> gemm: a reads the GEMM output (1 MB), b and c read their
    # predecessor only; fused: read 1 MB, write c's 1 MB, flops summed
    ops = (_op(0, "gemm"), _op(1, "elementwise", [0]), _op(2, "reduction", [1]),
           _op(3, "elementwise", [2]), _op(4, "gemm", [3]))
    fused = fuse_elementwise(Trace(ops))
    check_graph(fused.ops)
    assert [op.id for op in fused.ops] == [0, 3, 4]
    op = fused.ops[1]
    assert op.name == "fused:op1+op2+op3" and op.category == "reduction"
    assert (op.bytes_read, op.bytes_written, op.flops, op.num_kernels) == (MB, MB, 30.0, 1)
    assert op.deps == (0,)


def test_an_output_read_outside_the_chain_is_still_written():
    # b's output is also read by a backward op: it must be written
    ops = (_op(0, "gemm"), _op(1, "elementwise", [0]), _op(2, "elementwise", [1]),
           _op(3, "elementwise", [2]), _op(4, "gemm", [2], phase="backward"))
    fused = fuse_elementwise(Trace(ops))
    op = next(o for o in fused.ops if o.name.startswith("fused"))
    assert op.bytes_written == pytest.approx(2 * MB)
    assert fused.ops[-1].deps == (op.id,)  # the reader of b now waits for the fused kernel


def test_chains_break_at_other_modules_and_unrelated_ops():
    ops = (_op(0, "elementwise"), _op(1, "elementwise", [0], module="other"),
           _op(2, "elementwise"), _op(3, "elementwise", [0]))
    fused = fuse_elementwise(Trace(ops))
    assert fused is not None and len(fused.ops) == 4  # no op reads its predecessor in-module


def test_views_in_between_move_after_the_fused_op():
    ops = (_op(0, "gemm"), _op(1, "elementwise", [0]), _op(2, "view", [1], read=0, written=0),
           _op(3, "elementwise", [1]), _op(4, "gemm", [2, 3]))
    fused = fuse_elementwise(Trace(ops))
    check_graph(fused.ops)
    assert [op.category for op in fused.ops] == ["gemm", "elementwise", "view", "gemm"]
    assert fused.ops[2].deps == (3,)


def test_a_fused_op_keeps_the_host_time_before_its_chain_only():
    from dataclasses import replace

    ops = (_op(0, "gemm"), _op(1, "elementwise", [0]), _op(2, "elementwise", [1]),
           _op(3, "gemm", [2]))
    ops = tuple(replace(op, measured_s=1e-6, measured_host_s=(op.id + 1) * 1e-6) for op in ops)
    fused = fuse_elementwise(Trace(ops)).ops[1]
    assert fused.measured_s == pytest.approx(2e-6) and fused.measured_host_s == 2e-6
