"""Capacity planning: every layout of a trace on a system, ranked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sim.cli import main
from sim.cluster.sweep import candidate_plans, sweep_layouts
from sim.cluster.system import load_system
from sim.cluster.workload import ParallelPlan

TOY_SYSTEM = str(Path(__file__).parent / "data" / "toy-system.yaml")


def test_candidates_cover_every_divisor_layout():
    plans = candidate_plans(4, global_batch=8, micro_batch=2, tp=[1, 2, 4], pp=[1, 2],
                            zero=[0, 1], recompute=[False])
    layouts = {(p.tp, p.pp, p.dp, p.zero, p.microbatches) for p in plans
               if isinstance(p, ParallelPlan)}
    # t p d = 4; M = 8 / (d x 2); ZeRO only where d > 1
    assert layouts == {(1, 1, 4, 0, 1), (1, 1, 4, 1, 1), (1, 2, 2, 0, 2), (1, 2, 2, 1, 2),
                       (2, 1, 2, 0, 2), (2, 1, 2, 1, 2), (2, 2, 1, 0, 4), (4, 1, 1, 0, 4)}
    bad = candidate_plans(4, global_batch=3, micro_batch=1, tp=[1], pp=[1], zero=[0],
                          recompute=[False])
    assert bad == [({"tp": 1, "pp": 1, "dp": 4, "zero": 0, "recompute": False},
                    "global batch 3 is not a multiple of dp x micro-batch = 4")]


@pytest.fixture(scope="module")
def train_trace():
    from workloads import capture_model

    return capture_model("llama-tiny", phase="train", batch=2, seq=32, mode="fake")


def test_sweep_ranks_simulated_layouts_by_tokens_per_s(train_trace):
    from workloads.parallel import parallelize

    system = load_system(TOY_SYSTEM)
    plans = candidate_plans(4, global_batch=8, micro_batch=2, tp=[1, 2, 4], pp=[1, 2, 4],
                            zero=[0], recompute=[False])
    rows = sweep_layouts(train_trace, system, parallelize, plans)
    ok = [r for r in rows if r.status == "ok"]
    speeds = [r.figures["tokens_per_s"] for r in ok]
    assert ok and speeds == sorted(speeds, reverse=True)
    # tp 4 does not divide the 2 key/value heads; pp 4 does not divide the 2 layers
    invalid = {(r.plan.tp, r.plan.pp) for r in rows if r.status == "invalid"}
    assert (4, 1) in invalid and (1, 4) in invalid
    assert rows.index(ok[-1]) < min(rows.index(r) for r in rows if r.status == "invalid")


def test_sweep_cli(tmp_path, train_trace, capsys):
    from sim.trace import write_trace

    trace = tmp_path / "t.json"
    write_trace(train_trace, trace)
    out_json = tmp_path / "sweep.json"
    code = main(["sweep", str(trace), "--system", TOY_SYSTEM, "--global-batch", "8",
                 "--tp", "1,2", "--pp", "1,2", "--zero", "0", "--recompute", "no",
                 "--no-progress", "--json", str(out_json)])
    out = capsys.readouterr().out
    assert code == 0 and "4 layouts of 4 GPUs (toy-system)" in out
    data = json.loads(out_json.read_text())
    assert [r["status"] for r in data] == ["ok"] * 4
    assert main(["sweep", str(trace), "--system", TOY_SYSTEM, "--global-batch", "8",
                 "--tp", "3", "--pp", "1", "--no-progress"]) == 2
    assert "no TP x PP from [3] x [1] divides" in capsys.readouterr().err
