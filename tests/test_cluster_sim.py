"""The cluster simulator on a toy 2 x 2 GPU system: hand-computed pipeline, collective and
contention times, and the symmetry of representative ranks."""

from pathlib import Path

import pytest

from sim.cluster.comm import FABRIC_EFFICIENCY
from sim.cluster.simulate import simulate_parallel
from sim.cluster.system import load_system
from sim.cluster.workload import ParallelPlan, ParallelWorkload, StageProgram
from sim.cost import OpCost
from sim.cost.gpu_params import A100_FIT
from sim.errors import InputError
from sim.trace import Op

SYSTEM = load_system(str(Path(__file__).parent / "data" / "toy-system.yaml"))
# no latencies, links at full rate: transfers take bytes / bandwidth exactly
IDEAL = A100_FIT.replace(collective_latency_s=0.0, collective_latency_scale=0.0,
                         link_efficiency=1.0, link_efficiency_drop=0.0)
MS = 1e-3
NIC = 10e9 * FABRIC_EFFICIENCY  # toy NIC: 80 Gb/s


class OneMs:
    """Every compute op takes 1 ms on the device, no host time (a cost-model plug-in)."""

    name = "one-ms"

    def cost(self, op, spec):
        return OpCost(0.0, 0.0 if op.category in ("collective", "send_recv") else MS, 0.0,
                      "compute")


def _op(i, category="gemm", deps=(), stream=0, phase="forward", **attrs):
    return Op(id=i, name=category, category=category, deps=tuple(deps), stream=stream,
              phase=phase, dtype="bf16", flops=1e9 if category == "gemm" else 0.0, attrs=attrs)


def _run(stages, plan, **kw):
    workload = ParallelWorkload(plan, tuple(stages), {"tokens": 100.0})
    return simulate_parallel(workload, SYSTEM, cost_model=OneMs(), params=IDEAL, **kw)


def _pipeline(microbatches, send_bytes):
    s0 = StageProgram(0, (_op(0), _op(1, "send_recv", [0], direction="send", peer=1,
                                       bytes=send_bytes)))
    s1 = StageProgram(1, (_op(2, "send_recv", direction="recv", peer=0, bytes=send_bytes),
                          _op(3, deps=[2])))
    return [s0, s1], ParallelPlan(tp=2, pp=2, microbatches=microbatches)


def test_pipeline_forward_waits_for_each_send():
    # stage 0: a0 [0,1], a1 [1,2] ms; sends [1,2] and [2,3] ms on its NIC (9 MB at 9 GB/s);
    # stage 1: b0 after send 0 [2,3], b1 after send 1 [3,4]
    stages, plan = _pipeline(2, 1e-3 * NIC)
    result = _run(stages, plan)
    assert result.total_s == pytest.approx(4 * MS)
    rec = result.records.set_index(["rank", "start_s"]).sort_index()
    assert list(result.records.query("rank == 1 and category == 'gemm'")["start_s"]) == \
        pytest.approx([2 * MS, 3 * MS])
    assert rec is not None
    nic = [link for link in result.links if link["port"] == "nic"]
    assert nic[0]["bytes"] == pytest.approx(2e-3 * NIC)


def test_concurrent_collectives_share_the_nic():
    # after a 1 ms op, a dp all-reduce (stream 1) and a dp all-gather (stream 0) start together
    # on the NIC (dp group = GPUs 0 and 2, one per domain); each alone takes 1 ms, together
    # they halve each other's rate and both end at 3 ms
    ar, ag = 1e-3 * NIC, 2e-3 * NIC  # ring bytes per rank: ar 2 (n-1)/n S = S, ag S / 2
    stage = StageProgram(0, (_op(0), _op(1, "collective", [0], stream=1, collective="allreduce",
                                          group="dp", bytes=ar),
                             _op(2, "collective", [0], collective="allgather", group="dp",
                                 bytes=ag)))
    together = _run([stage], ParallelPlan(tp=2, dp=2), algo="ring")
    assert together.total_s == pytest.approx(3 * MS)
    nic = [link for link in together.links if link["port"] == "nic"]
    assert nic[0]["busy_s"] == pytest.approx(2 * MS)
    assert nic[0]["utilization"] == pytest.approx(2 / 3)  # of what the NIC sustains


def test_tensor_parallel_allreduce_on_the_switch():
    # all-reduce of 100 MB among 2 GPUs of a domain: ring moves 2 (n-1)/n S = S over 100 GB/s
    stage = StageProgram(0, (_op(0), _op(1, "collective", [0], collective="allreduce",
                                          group="tp", bytes=100e6), _op(2, deps=[1])))
    result = _run([stage], ParallelPlan(tp=2, dp=2))
    assert result.total_s == pytest.approx(3 * MS)
    stage0 = result.stages[0]
    assert stage0["comm_s"] == pytest.approx(MS)
    assert stage0["exposed_comm_s"] == pytest.approx(MS)


def test_data_parallel_allreduce_overlaps_compute():
    # the dp all-reduce on stream 1 (across the two domains, 1 rank each: NIC-bound) runs
    # while the compute stream does two more 1 ms ops: exposed only past the compute
    nbytes = 1e-3 * NIC  # ring 2 (n-1)/n S = S per rank over the NIC: 1 ms
    stage = StageProgram(0, (_op(0), _op(1, "collective", [0], stream=1, collective="allreduce",
                                          group="dp", bytes=nbytes), _op(2, deps=[0]),
                             _op(3, deps=[2])))
    result = _run([stage], ParallelPlan(tp=2, dp=2), algo="ring")
    assert result.total_s == pytest.approx(3 * MS)
    assert result.stages[0]["exposed_comm_s"] == pytest.approx(0.0, abs=1e-12)
    assert result.stages[0]["overlapped_comm_s"] == pytest.approx(MS)


def test_mfu_counts_model_flops_over_all_gpus():
    stages, plan = _pipeline(2, 1e-3 * NIC)
    result = _run(stages, plan)
    peak = SYSTEM.device.compute.matrix_peak("bf16")
    executed = 2 * 2 * 1e9 * plan.tp  # 1 GEMM x 2 micro-batches x 2 stages, on tp ranks each
    assert result.hfu == pytest.approx(executed / (result.total_s * 4 * peak))


def test_degrees_must_match_the_system():
    stages, _ = _pipeline(1, 1.0)
    with pytest.raises(InputError, match="do not divide the system's 4 GPUs"):
        _run(stages, ParallelPlan(tp=3, pp=2))
    half = _run(stages, ParallelPlan(tp=1, pp=2))  # 2 of the 4 GPUs: GPUs 0 and 1, one domain
    assert half.world == 2


def test_memory_verdict_stops_a_run_that_does_not_fit():
    stage = StageProgram(0, (_op(0),), memory_bytes={"weights": 2e9})
    with pytest.raises(InputError, match="does not fit: stage 0 needs"):
        _run([stage], ParallelPlan(tp=2, dp=2))
    result = _run([stage], ParallelPlan(tp=2, dp=2), allow_oom=True)
    assert result.memory[0].verdict == "out of memory"


@pytest.mark.parametrize("plan", [
    ParallelPlan(tp=2, pp=2, microbatches=3),
    ParallelPlan(tp=2, dp=2, microbatches=2),
    ParallelPlan(pp=2, dp=2, microbatches=2, schedule="gpipe", zero=1),
])
def test_representative_ranks_give_the_same_answer_as_all_ranks(plan):
    """The symmetry reduction is exact: simulating every rank (collectives as rendezvous)
    gives the same T and the same per-stage times as one representative per stage."""
    from workloads import capture_model
    from workloads.parallel import parallelize

    trace = capture_model("llama-tiny", phase="train", batch=2, seq=32, mode="fake")
    workload = parallelize(trace, plan)
    one = simulate_parallel(workload, SYSTEM, records=False)
    every = simulate_parallel(workload, SYSTEM, records=False, symmetric=False)
    assert every.simulated_ranks == plan.world and one.simulated_ranks == plan.pp
    assert every.total_s == pytest.approx(one.total_s, rel=1e-12)
    for a, b in zip(one.stages, every.stages, strict=True):
        for key in ("compute_s", "comm_s", "exposed_comm_s", "bubble_fraction"):
            assert b[key] == pytest.approx(a[key], rel=1e-9, abs=1e-15)


def test_interleaved_order_follows_megatron():
    from sim.cluster.program import interleaved_order

    # p = 2 devices, v = 2 chunks each (device 0: chunks 0, 2; device 1: 1, 3), M = 2
    assert interleaved_order(0, 2, 2, 2) == [
        (0, "F", 0), (0, "F", 1), (2, "F", 0), (2, "F", 1),
        (2, "B", 0), (2, "B", 1), (0, "B", 0), (0, "B", 1)]
    assert interleaved_order(1, 2, 2, 2) == [
        (1, "F", 0), (1, "F", 1), (3, "F", 0), (3, "B", 0), (3, "F", 1), (3, "B", 1),
        (1, "B", 0), (1, "B", 1)]


def test_virtual_stages_need_a_1f1b_pipeline_and_whole_rounds():
    with pytest.raises(InputError, match="--virtual-stages"):
        ParallelPlan(pp=2, virtual_stages=2, schedule="gpipe")
    with pytest.raises(InputError, match="multiples of the 2 stages"):
        ParallelPlan(pp=2, virtual_stages=2, microbatches=3)


@pytest.fixture(scope="module")
def four_layer_train():
    from workloads import capture_model

    return capture_model("llama-tiny", phase="train", batch=2, seq=32, mode="fake", layers=4)


def test_interleaving_shrinks_the_bubble(four_layer_train):
    """Same work, same GPUs: 4 chunks of 1 layer on 2 devices leave less idle time than 2
    chunks of 2 layers (Narayanan et al. SC'21, sec. 2.2.2), and every rank simulated gives
    the same answer as the representatives."""
    from workloads.parallel import parallelize

    class Compute(OneMs):  # layer ops 1 ms, everything else free: compute-bound stages
        def cost(self, op, spec):
            busy = op.category == "gemm" and ".layers." in op.module
            return OpCost(0.0, MS if busy else 0.0, 0.0, "compute")

    runs = {}
    for v in (1, 2):
        plan = ParallelPlan(tp=2, pp=2, microbatches=4, virtual_stages=v)
        workload = parallelize(four_layer_train, plan)
        assert len(workload.stages) == 2 * v
        runs[v] = simulate_parallel(workload, SYSTEM, cost_model=Compute(), params=IDEAL,
                                    records=False)
        every = simulate_parallel(workload, SYSTEM, cost_model=Compute(), params=IDEAL,
                                  records=False, symmetric=False)
        assert every.total_s == pytest.approx(runs[v].total_s, rel=1e-12)
    assert runs[2].total_s < runs[1].total_s
    assert runs[2].bubble_fraction < runs[1].bubble_fraction
    assert runs[2].memory[0].microbatches_in_flight == 5  # (p - 1) 2 + (v - 1) p + 1
