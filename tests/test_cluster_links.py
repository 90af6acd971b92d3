"""Shared links: flows on one port share its bandwidth max-min fairly (hand-computed times)."""

import pytest
import simpy

from sim.cluster.links import FluidNetwork
from sim.cluster.program import chunk_order

INF = float("inf")


def _run(starts):
    """starts: list of (start time, port, capacity, bytes, cap); returns end time per flow."""
    env = simpy.Environment()
    net = FluidNetwork(env)
    ends = [None] * len(starts)

    def flow(k, t0, port, capacity, nbytes, cap):
        yield env.timeout(t0)
        yield net.transfer([(port, capacity, nbytes, cap)])
        ends[k] = env.now

    for k, args in enumerate(starts):
        env.process(flow(k, *args))
    env.run()
    return ends, net


def test_one_flow_runs_at_its_cap():
    ends, _ = _run([(0.0, "p", 100.0, 100.0, 50.0)])
    assert ends == [pytest.approx(2.0)]


def test_two_equal_flows_share_the_port():
    ends, net = _run([(0.0, "p", 100.0, 100.0, INF), (0.0, "p", 100.0, 100.0, INF)])
    assert ends == [pytest.approx(2.0), pytest.approx(2.0)]
    usage = net.usage()["p"]
    assert usage.bytes == 200.0 and usage.busy_s == pytest.approx(2.0)


def test_late_flow_slows_the_first_only_while_both_run():
    # 0-0.5 s: A alone at 100 B/s (50 B left); then 50 B/s each: both end at 1.5 s
    ends, _ = _run([(0.0, "p", 100.0, 100.0, INF), (0.5, "p", 100.0, 50.0, INF)])
    assert ends == [pytest.approx(1.5), pytest.approx(1.5)]


def test_capped_flow_leaves_the_rest_to_the_other():
    # A capped at 30 B/s, B takes 70 B/s: B (70 B) ends at 1 s, then A alone at 30 B/s
    ends, _ = _run([(0.0, "p", 100.0, 60.0, 30.0), (0.0, "p", 100.0, 70.0, INF)])
    assert ends[1] == pytest.approx(1.0)
    assert ends[0] == pytest.approx(2.0)  # 30 B by 1 s, 30 B more at 30 B/s


def test_flows_on_different_ports_do_not_interact():
    ends, _ = _run([(0.0, "a", 100.0, 100.0, INF), (0.0, "b", 100.0, 100.0, INF)])
    assert ends == [pytest.approx(1.0), pytest.approx(1.0)]


def test_1f1b_order_warms_up_then_alternates():
    assert chunk_order("1f1b", 0, 2, 3, True) == [
        ("F", 0), ("F", 1), ("B", 0), ("F", 2), ("B", 1), ("B", 2)]
    assert chunk_order("1f1b", 1, 2, 3, True) == [
        ("F", 0), ("B", 0), ("F", 1), ("B", 1), ("F", 2), ("B", 2)]
    assert chunk_order("gpipe", 0, 2, 2, True) == [("F", 0), ("F", 1), ("B", 0), ("B", 1)]
    assert chunk_order("1f1b", 0, 4, 2, False) == [("F", 0), ("F", 1)]
