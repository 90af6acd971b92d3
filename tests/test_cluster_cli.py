"""Many devices on the command line: golden outputs, the JSON contract, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import check_golden

from sim.cli import main
from workloads import capture_model

HERE = Path(__file__).resolve().parent
DATA, GOLDEN = HERE / "data", HERE / "golden"
TOY_SYSTEM = str(DATA / "toy-system.yaml")


@pytest.fixture(scope="module")
def train_trace(tmp_path_factory):
    """llama-tiny, one training step on fake tensors (b=2, s=64)."""
    from sim.trace import write_trace

    path = tmp_path_factory.mktemp("cluster") / "llama-tiny-train.json"
    write_trace(capture_model("llama-tiny", phase="train", batch=2, seq=64, mode="fake"), path)
    return str(path)


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _golden(name: str, text: str) -> None:
    check_golden(name, text)


def test_op_allreduce_on_a_node_golden(capsys):
    code, out, _ = _run(capsys, "op", "allreduce", "--bytes", "268435456", "--hw", "dgx-h100")
    assert code == 0
    _golden("op_allreduce_dgx_h100.txt", out)


def test_op_allreduce_across_nodes_forced_ring(capsys, tmp_path):
    path = tmp_path / "ar.json"
    code, out, _ = _run(capsys, "op", "allreduce", "--bytes", "268435456", "--hw",
                        "dgx-h100-superpod", "--ranks", "16", "--algo", "ring", "--json",
                        str(path))
    data = json.loads(path.read_text())
    assert code == 0 and data["algorithm"].startswith("ring/")
    assert {f["port"] for f in data["flows"]} == {"nic", "scale-up"}
    # 16 GPUs, 8 per node: each NIC carries 2 (n-1)/n S / 8 of the bus bytes
    nic = next(f for f in data["flows"] if f["port"] == "nic")
    assert nic["bytes"] == pytest.approx(2 * 15 / 16 * 268435456 / 8)


def test_simulate_system_golden(capsys, train_trace):
    code, out, _ = _run(capsys, "simulate", train_trace, "--system", TOY_SYSTEM, "--tp", "2",
                        "--pp", "2", "--microbatches", "3", "--cost-model", "roofline")
    assert code == 0
    _golden("simulate_system_toy.txt", out)


def test_simulate_system_json_and_perfetto(capsys, train_trace, tmp_path):
    js, pf, html = tmp_path / "r.json", tmp_path / "r.perfetto.json", tmp_path / "r.html"
    code, _, _ = _run(capsys, "simulate", train_trace, "--system", TOY_SYSTEM, "--pp", "2",
                      "--dp", "2", "--microbatches", "2", "--schedule", "gpipe", "--json",
                      str(js), "--perfetto", str(pf), "--html", str(html))
    assert code == 0
    page = html.read_text()
    for key in ("timeline", "split", "links", "memory"):
        assert f'id="tksim-cluster-{key}"' in page
    data = json.loads(js.read_text())
    assert data["world"] == 4 and data["simulated_ranks"] == 2
    assert 0 < data["mfu"] <= data["hfu"] < 1
    for stage in data["stages"]:
        assert stage["exposed_comm_s"] + stage["overlapped_comm_s"] == pytest.approx(
            stage["comm_s"])
        crit = stage["crit_host_s"] + stage["crit_compute_s"] + stage["crit_comm_s"]
        assert crit <= data["total_s"] * (1 + 1e-9)
    assert sum(s["crit_host_s"] + s["crit_compute_s"] + s["crit_comm_s"]
               for s in data["stages"]) == pytest.approx(data["total_s"])
    events = json.loads(pf.read_text())["traceEvents"]
    assert {e["pid"] for e in events} == {0, 1}  # one process per stage


@pytest.mark.parametrize("argv, message", [
    (["--tp", "3"], "--tp: 3 does not divide"),
    (["--pp", "3"], "--pp: 3 does not divide the 2 layers"),
    (["--tp", "2", "--dp", "4"], "do not divide the system's 4 GPUs"),
    (["--nodes", "0"], "--nodes: must be a whole number >= 1"),
])
def test_simulate_system_bad_degrees(capsys, train_trace, argv, message):
    code, out, err = _run(capsys, "simulate", train_trace, "--system", TOY_SYSTEM, *argv)
    assert code == 2 and out == ""
    assert err.startswith("tksim: error: ") and message in err and err.count("\n") == 1


def test_simulate_system_that_does_not_fit(capsys, tmp_path):
    # GPT-2 small training: 124 M params x (4 weights + 4 gradients + 8 AdamW) B = 2 GB, more
    # than the toy GPU's 1 GB even split over 2 tensor-parallel ranks
    from sim.trace import write_trace

    path = tmp_path / "gpt2.json"
    write_trace(capture_model("gpt2", phase="train", batch=1, seq=32, mode="fake"), path)
    code, out, err = _run(capsys, "simulate", str(path), "--system", TOY_SYSTEM, "--tp", "2")
    assert code == 2 and out == ""
    assert "memory: does not fit: stage 0 needs" in err and "of toy-gpu" in err
    assert err.count("\n") == 1
    code, out, _ = _run(capsys, "simulate", str(path), "--system", TOY_SYSTEM, "--tp", "2",
                        "--allow-oom")
    assert code == 0 and "out of memory:" in out


def test_simulate_needs_hw_or_system(capsys, train_trace):
    code, _, err = _run(capsys, "simulate", train_trace)
    assert code == 2 and "--hw DEVICE (repeatable) or --system SYSTEM" in err
    code, _, err = _run(capsys, "simulate", train_trace, "--hw", "h100", "--system", "dgx-h100")
    assert code == 2 and "not both" in err
    code, _, err = _run(capsys, "simulate", train_trace, "--system", "dgx-h1000")
    assert code == 2 and "did you mean" in err
    code, _, err = _run(capsys, "simulate", train_trace, "--system", TOY_SYSTEM, "--cost-model",
                        "measured")
    assert code == 2 and "--cost-model" in err


def test_simulate_system_absurd_microbatches(capsys, train_trace):
    code, out, err = _run(capsys, "simulate", train_trace, "--system", TOY_SYSTEM, "--tp", "2",
                          "--pp", "2", "--microbatches", "100000000")
    assert code == 2 and out == "" and "absurd size" in err and err.count("\n") == 1


def test_cuda_graphs_lift_a_host_bound_pipeline(capsys, train_trace, tmp_path):
    times = []
    for extra in ([], ["--cuda-graphs"]):
        path = tmp_path / f"r{len(times)}.json"
        code, _, _ = _run(capsys, "simulate", train_trace, "--system", TOY_SYSTEM, "--pp", "2",
                          "--microbatches", "2", "--json", str(path), *extra)
        assert code == 0
        data = json.loads(path.read_text())
        times.append((data["total_s"], sum(s["crit_host_s"] for s in data["stages"])))
    (eager, eager_host), (graphs, graphs_host) = times
    assert graphs < eager and graphs_host < eager_host
