"""Calibrating a system's collectives on its own measurements (validation.collective_calibrate)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sim.cli import main
from sim.cluster.system import load_system
from sim.cost.gpu_params import A100_FIT
from validation.collective_calibrate import (
    fit_collectives,
    predict_rows,
    read_measurements,
    without_nvls,
)

TOY_SYSTEM = str(Path(__file__).resolve().parent / "data" / "toy-system.yaml")
TRUE = {"link_efficiency": 0.8, "link_efficiency_drop": 1.5, "collective_latency_s": 2e-6,
        "collective_latency_scale": 2.0}


def _measurements(tmp_path) -> Path:
    """nccl-tests-like rows on 2 GPUs of one toy domain, timed by the model with TRUE."""
    rows = pd.DataFrame([(kind, 2, size, "half") for kind in ("allreduce", "allgather",
                                                               "reducescatter", "alltoall")
                         for size in (2.0**k for k in range(10, 31, 2))],
                        columns=["kind", "num_gpus", "bytes", "dtype"])
    rows["dtype"] = "fp16"
    seconds = predict_rows(load_system(TOY_SYSTEM), rows, A100_FIT.replace(**TRUE))
    path = tmp_path / "nccl.csv"
    pd.DataFrame({"collective": rows["kind"].str.replace("allreduce", "all_reduce"),
                  "num_gpus": 2, "bytes": rows["bytes"].astype(int), "time_us": seconds * 1e6,
                  "dtype": "half"}).to_csv(path, index=False)
    return path


def test_fit_recovers_the_parameters_that_timed_the_rows(tmp_path):
    rows = read_measurements(_measurements(tmp_path))
    assert set(rows["kind"]) == {"allreduce", "allgather", "reducescatter", "alltoall"}
    assert set(rows["dtype"]) == {"fp16"}
    fitted = fit_collectives(load_system(TOY_SYSTEM), rows)
    assert fitted.pop("nvls") == 1.0  # the toy switch does not reduce: nothing to decide
    assert fitted == pytest.approx(TRUE, rel=1e-3)


def test_fit_tells_a_stack_without_nvls_apart():
    # 4-GPU all-reduces of a DGX H100 whose NCCL runs rings only: the fit without NVLS wins
    h100 = load_system("dgx-h100")
    rows = pd.DataFrame({"kind": "allreduce", "num_gpus": 4,
                         "bytes": [2.0**k for k in range(16, 31)], "dtype": "fp16"})
    rows["seconds"] = predict_rows(without_nvls(h100), rows, A100_FIT.replace(**TRUE))
    assert fit_collectives(h100, rows)["nvls"] == 0.0
    rows["seconds"] = predict_rows(h100, rows, A100_FIT.replace(**TRUE))
    assert fit_collectives(h100, rows)["nvls"] == 1.0


def test_cli_writes_a_system_that_uses_its_own_collectives(tmp_path, capsys):
    out = tmp_path / "toy-cal.yaml"
    code = main(["calibrate", "--collectives", str(_measurements(tmp_path)), "--system",
                 TOY_SYSTEM, "-o", str(out)])
    assert code in (0, None) and "wrote calibrated system" in capsys.readouterr().out
    system = load_system(str(out))
    assert system.name == "toy-system-calibrated"
    assert system.collectives["link_efficiency"] == pytest.approx(0.8, rel=1e-3)
    assert system.collectives["link_efficiency_drop"] == pytest.approx(1.5, rel=1e-3)
    assert "collective_calibration" in system.sources
    # the calibrated system prices a collective like the parameters that timed the rows
    rows = pd.DataFrame({"kind": ["allgather"], "num_gpus": [2], "bytes": [2.0**26],
                         "dtype": ["fp16"]})
    truth = predict_rows(load_system(TOY_SYSTEM), rows, A100_FIT.replace(**TRUE))[0]
    assert predict_rows(system, rows, system.collective_params(A100_FIT))[0] == pytest.approx(
        truth, rel=1e-3)


@pytest.mark.parametrize(("text", "argv", "message"), [
    ("collective,num_gpus,bytes,time_us\nall_reduce,2,1024,5\n", ["-o", "{out}"],
     "--system: a collective calibration needs"),
    ("collective,num_gpus,bytes\nall_reduce,2,1024\n", ["--system", TOY_SYSTEM, "-o", "{out}"],
     "time_us: missing column"),
    ("collective,num_gpus,bytes,time_us\nall_scatter,2,1024,5\n",
     ["--system", TOY_SYSTEM, "-o", "{out}"], "collective: unknown collective 'all_scatter'"),
    ("collective,num_gpus,bytes,time_us\nall_reduce,1,1024,5\n",
     ["--system", TOY_SYSTEM, "-o", "{out}"], "num_gpus: row 2: must be a number >= 2"),
    ("collective,num_gpus,bytes,time_us\nall_reduce,8,1024,5\n",
     ["--system", TOY_SYSTEM, "-o", "{out}"], "num_gpus: a row uses 8 GPUs; toy-system has 4"),
    ("collective,num_gpus,bytes,time_us\nall_reduce,2,1024,5\n",
     ["--system", TOY_SYSTEM, "-o", "/nonexistent/dir/x.yaml"], "output directory does not"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, text, argv, message):
    csv = tmp_path / "m.csv"
    csv.write_text(text)
    argv = [a.replace("{out}", str(tmp_path / "o.yaml")) for a in argv]
    assert main(["calibrate", "--collectives", str(csv), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err and "Traceback" not in err
    assert not (tmp_path / "o.yaml").exists()
