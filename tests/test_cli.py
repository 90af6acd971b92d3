"""The command line: golden outputs, JSON contracts, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import check_golden

from sim.cli import main

HERE = Path(__file__).resolve().parent
DATA, GOLDEN = HERE / "data", HERE / "golden"
TOY_GPU, TOY_CPU, TINY = (str(DATA / n) for n in ("toy-gpu.yaml", "toy-cpu.yaml",
                                                   "tiny-trace.json"))


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out.replace(str(DATA), "tests/data"), err


def _golden(name: str, text: str) -> None:
    check_golden(name, text)


def test_op_gemm_golden(capsys):
    code, out, _ = _run(capsys, "op", "gemm", "--m", "4096", "--n", "4096", "--k", "4096",
                        "--dtype", "bf16", "--hw", TOY_GPU, "--cost-model", "roofline")
    assert code == 0
    _golden("op_gemm_toy.txt", out)


def test_simulate_golden(capsys):
    code, out, _ = _run(capsys, "simulate", TINY, "--hw", TOY_GPU, "--hw", TOY_CPU,
                        "--cost-model", "roofline")
    assert code == 0
    _golden("simulate_tiny_toy.txt", out)


def test_op_json_contract(tmp_path, capsys):
    path = tmp_path / "op.json"
    code, _, _ = _run(capsys, "op", "attention", "--b", "2", "--heads", "8", "--seq", "256",
                      "--hw", TOY_GPU, "--json", str(path))
    data = json.loads(path.read_text())
    assert code == 0
    assert data["total_s"] == pytest.approx(data["t_pre_s"] + data["t_calc_s"] + data["t_post_s"])
    assert data["bound"] in ("compute", "memory", "latency")


def test_simulate_json_contract(tmp_path, capsys):
    path = tmp_path / "s.json"
    code, _, _ = _run(capsys, "simulate", TINY, "--hw", TOY_GPU, "--json", str(path))
    data = json.loads(path.read_text())
    assert code == 0
    keys = {"total_s", "t_pre_s", "t_calc_s", "t_post_s", "num_ops", "hw", "categories"}
    assert keys <= set(data)
    assert data["num_ops"] == 14 and data["hw"] == "toy-gpu"
    assert data["t_pre_s"] + data["t_calc_s"] + data["t_post_s"] == pytest.approx(data["total_s"])
    assert sum(c["num_ops"] for c in data["categories"].values()) == 14


def test_specs_list_json(capsys):
    code, out, _ = _run(capsys, "specs", "list", "--json")
    rows = json.loads(out)
    assert code == 0
    assert {"name", "kind"} <= set(rows[0])
    assert {r["kind"] for r in rows} <= {"gpu", "cpu", "system"}
    assert any(r["name"] == "nvidia-h100-sxm5-80gb" for r in rows)


def test_specs_show(capsys):
    code, out, _ = _run(capsys, "specs", "show", "h100")
    assert code == 0 and "989 TFLOP/s" in out and "sources:" in out


@pytest.mark.parametrize(("argv", "fragment"), [
    (["simulate", TINY, "--hw", "h1000"], "did you mean"),
    (["simulate", "missing.json", "--hw", TOY_GPU], "no such trace file"),
    (["op", "gemm", "--m", "-4", "--n", "1", "--k", "1", "--hw", TOY_GPU], "--m"),
    (["op", "gemm", "--m", "4", "--n", "1", "--k", "1", "--hw", TOY_CPU, "--cores", "99"],
     "between 1 and 4"),
    (["op", "warp", "--hw", TOY_GPU], "invalid choice"),
    (["bench", "--ops", "0"], "--ops"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, fragment):
    code, out, err = _run(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("tksim: error: ")
    assert fragment in err


def test_bad_trace_leaves_no_output_file(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "tksim.trace", "version": 1, "meta": {},
                               "ops": [{"id": 0, "name": "a", "category": "gemm", "deps": [0]}]}))
    out = tmp_path / "out.json"
    code, _, err = _run(capsys, "simulate", str(bad), "--hw", TOY_GPU, "--json", str(out))
    assert code == 2 and "cyclic" in err and str(bad) in err
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]


def test_console_script_exits_2_without_traceback(tmp_path):
    spec = tmp_path / "broken.yaml"
    spec.write_text("schema: tksim.hw/1\nname: broken\nkind: gpu\n")
    proc = subprocess.run([sys.executable, "-m", "sim.cli", "op", "gemm", "--m", "8", "--n", "8",
                           "--k", "8", "--hw", str(spec)], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert str(spec) in proc.stderr and "sources" in proc.stderr


@pytest.mark.parametrize(("argv", "fragment"), [
    (["validate", "--dataset", "nope"], "unknown dataset"),
    (["validate", "--dataset", "all", "--data-dir", "/nonexistent/gt"], "--data-dir"),
    (["capture", "--model", "nope", "-o", "x.json"], "--model"),
    (["capture", "--model", "gpt2-tiny", "--seq", "0", "-o", "x.json"], "--seq"),
    (["capture", "--model", "gpt2-tiny", "-o", "/nonexistent/dir/x.json"], "does not exist"),
])
def test_validate_and_capture_bad_input(capsys, argv, fragment):
    code, _, err = _run(capsys, *argv)
    assert code == 2 and err.count("\n") == 1 and fragment in err


def test_import_export_round_trip(tmp_path, capsys):
    imported, exported, again = (tmp_path / n for n in ("t.json.gz", "et.json", "t2.json"))
    profile = str(DATA / "profiler-cpu.json.gz")
    assert _run(capsys, "import", "torch-profiler", profile, "-o", str(imported))[0] == 0
    assert _run(capsys, "export", "chakra", str(imported), "-o", str(exported))[0] == 0
    assert _run(capsys, "import", "chakra", str(exported), "-o", str(again))[0] == 0
    from sim.trace import read_trace

    first, second = read_trace(imported), read_trace(again)
    assert [(o.name, o.flops, o.deps) for o in first.ops] == [
        (o.name, o.flops, o.deps) for o in second.ops]


@pytest.mark.parametrize(("module", "argv", "fragment"), [
    ("validation.cpu_calibrate", ["-o", "/nonexistent/spec.yaml"], "-o: output directory"),
    ("validation.cpu_validation", ["--hw", "nosuch"], "--hw: unknown hardware spec"),
])
def test_validation_entry_points_report_bad_input_on_one_line(module, argv, fragment):
    proc = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert fragment in proc.stderr
