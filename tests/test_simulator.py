"""Tiny scenarios with hand-computed times: serial chains, parallel streams, host-bound and
device-bound regimes, synchronization, and the exactness of the critical-path decomposition."""

from __future__ import annotations

import pytest

from sim.cost import OpCost
from sim.simulator import simulate
from sim.trace import Op, Trace


def _ops(n, *, chain=True, streams=None, sync=()):
    return Trace(tuple(
        Op(id=i, name=f"op{i}", category="other", deps=(i - 1,) if chain and i else (),
           stream=streams[i] if streams else 0, sync=i in sync)
        for i in range(n)
    ))


def _costs(*terms):
    return [OpCost(pre, calc, post, "compute") for pre, calc, post in terms]


def _log(result):
    return [(r.name, r.issue_s, r.start_s, r.end_s) for r in result.ops.itertuples()]


def test_serial_chain_on_cpu_makespan_is_sum_of_t_i(toy_cpu):
    costs = _costs((1.0, 2.0, 0.5), (0.5, 1.0, 0.25), (0.25, 4.0, 0.0))
    result = simulate(_ops(3), toy_cpu, costs=costs)
    assert result.total_s == 1.0 + 2.0 + 0.5 + 0.5 + 1.0 + 0.25 + 0.25 + 4.0
    assert _log(result) == [("op0", 1.0, 1.0, 3.5), ("op1", 4.0, 4.0, 5.25),
                            ("op2", 5.5, 5.5, 9.5)]


def test_cpu_is_synchronous_even_without_dependencies(toy_cpu):
    costs = _costs((1.0, 2.0, 0.0), (1.0, 2.0, 0.0))
    result = simulate(_ops(2, chain=False, streams=[0, 1]), toy_cpu, costs=costs)
    assert result.total_s == 6.0  # the host waits for each op: nothing overlaps on a CPU


def test_independent_ops_on_two_streams_take_the_max(toy_gpu):
    costs = _costs((0.0, 3.0, 0.0), (0.0, 5.0, 0.0))
    result = simulate(_ops(2, chain=False, streams=[0, 1]), toy_gpu, costs=costs)
    assert result.total_s == 5.0
    assert _log(result) == [("op0", 0.0, 0.0, 3.0), ("op1", 0.0, 0.0, 5.0)]


def test_host_bound_chain_where_t_pre_dominates(toy_gpu):
    # each op: host 2 s to issue, device 0.5 s: the device idles, waiting for the host
    costs = _costs(*[(2.0, 0.5, 0.0)] * 4)
    result = simulate(_ops(4), toy_gpu, costs=costs)
    assert result.total_s == 4 * 2.0 + 0.5
    assert result.regime == "host-bound"
    assert list(result.ops.waited_for) == ["host"] * 4
    assert result.ops.crit_pre_s.sum() == 8.0 and result.ops.crit_calc_s.sum() == 0.5


def test_device_bound_chain_hides_host_time(toy_gpu):
    costs = _costs(*[(0.5, 2.0, 0.25)] * 4)
    result = simulate(_ops(4), toy_gpu, costs=costs)
    assert result.total_s == 0.5 + 4 * 2.25  # only the first t_pre is exposed
    assert result.regime == "device-bound"
    assert list(result.ops.waited_for) == ["host", "stream", "stream", "stream"]
    assert list(result.ops.crit_pre_s) == [0.5, 0.0, 0.0, 0.0]


def test_sync_op_makes_the_host_wait(toy_gpu):
    # op1 synchronizes: the host cannot issue op2 before op1 ends at 0.5 + 4 + 4 = 8.5
    costs = _costs((0.5, 4.0, 0.0), (0.5, 4.0, 0.0), (0.5, 1.0, 0.0))
    result = simulate(_ops(3, sync={1}), toy_gpu, costs=costs)
    assert result.ops.host_start_s.tolist() == [0.0, 0.5, 8.5]
    assert result.total_s == 8.5 + 0.5 + 1.0
    assert result.ops.crit_pre_s.tolist() == [0.5, 0.0, 0.5]


def test_cross_stream_dependency_waits(toy_gpu):
    trace = Trace((
        Op(id=0, name="a", category="other", stream=0),
        Op(id=1, name="b", category="other", stream=1),
        Op(id=2, name="c", category="other", stream=1, deps=(0,)),
    ))
    result = simulate(trace, toy_gpu, costs=_costs((0, 4.0, 0), (0, 1.0, 0), (0, 1.0, 0)))
    assert _log(result)[2] == ("c", 0.0, 4.0, 5.0)
    assert result.ops.waited_for.tolist()[2] == "dep"
    assert result.ops.crit_calc_s.tolist() == [4.0, 0.0, 1.0]


@pytest.mark.parametrize("device", ["toy_gpu", "toy_cpu"])
def test_critical_path_terms_add_up_to_t(device, request):
    spec = request.getfixturevalue(device)
    streams = [i % 3 for i in range(60)]
    trace = Trace(tuple(
        Op(id=i, name="x", category="other", stream=streams[i],
           deps=tuple(j for j in (i - 1, i - 7) if j >= 0 and i % 4), sync=i % 17 == 0)
        for i in range(60)
    ))
    costs = _costs(*[(0.125 * (i % 5), 0.25 * (i % 7), 0.0625 * (i % 3)) for i in range(60)])
    result = simulate(trace, spec, costs=costs)
    ops = result.ops
    total = ops.crit_pre_s.sum() + ops.crit_calc_s.sum() + ops.crit_post_s.sum()
    assert total == pytest.approx(result.total_s, rel=1e-12)
    assert result.total_s == pytest.approx(ops.end_s.max(), rel=1e-12)


def test_same_inputs_same_outputs(toy_gpu):
    trace = _ops(50, chain=False, streams=[i % 2 for i in range(50)])
    costs = _costs(*[(0.001 * i, 0.003 * (50 - i), 0.0) for i in range(50)])
    first = simulate(trace, toy_gpu, costs=costs).ops
    second = simulate(trace, toy_gpu, costs=costs).ops
    assert first.equals(second)


def test_empty_trace(toy_gpu):
    result = simulate(Trace(()), toy_gpu)
    assert result.total_s == 0.0 and result.num_ops == 0
