"""GPU validation end to end: fit on A100, predict held-out GPUs, assert the achieved errors.

The bounds are the numbers this model achieved on 2026-11-30 (docs/gpu-validation.md) plus a
margin of 1-3 points, so a regression fails CI; where they are above the issue's targets, the
target is not met and the docs say why. Skipped when ../shared/ground_truth is absent.
"""

from __future__ import annotations

import json

import pytest

from sim.cost.gpu_params import A100_FIT, FIT_PARAMETERS
from validation.datasets import DataMissing, ground_truth_dir, load_rows
from validation.gpu_fit import fit_a100
from validation.gpu_report import write_gpu_report
from validation.gpu_validation import run_gpu_validation

try:
    ground_truth_dir()
except DataMissing as exc:
    pytest.skip(f"ground truth not available: {exc}", allow_module_level=True)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results():
    return run_gpu_validation("all")


def _pooled(results, gpu, category):
    return next(e for e in results["pooled"] if e["gpu"] == gpu and e["category"] == category)


# (gpu, category, achieved median APE + margin, achieved p90 + margin), held-out GPUs
HELD_OUT = [
    ("H100", "gemm", 0.10, 0.29), ("H200", "gemm", 0.11, 0.29), ("B200", "gemm", 0.16, 0.36),
    ("L40S", "gemm", 0.14, 0.41), ("H100", "attention", 0.115, 0.39),
    ("H200", "attention", 0.115, 0.37), ("B200", "attention", 0.27, 0.75),
    ("H100", "memory", 0.15, 0.34),  # the 15 % target, met (14.9 %)
]


@pytest.mark.parametrize(("gpu", "category", "median", "p90"), HELD_OUT)
def test_held_out_errors_stay_at_their_achieved_level(results, gpu, category, median, p90):
    entry = _pooled(results, gpu, category)
    assert entry["split"] == "heldout"
    assert entry["calibrated"]["median_ape"] <= median
    assert entry["calibrated"]["p90_ape"] <= p90
    # calibration on A100 helps every held-out GPU over the datasheet-only model
    assert entry["calibrated"]["median_ape"] < entry["datasheet"]["median_ape"]


def test_llama_layer_sums_on_h100_stay_at_their_achieved_level(results):
    layers = {e["model"]: e["calibrated"]["median_ape"] for e in results["layers"]
              if e["gpu"] == "H100"}
    assert set(layers) == {"Llama-2-7b-hf", "Llama-2-70b-hf"}
    # not met (8 %): the GEMMs' -13 % bias on Vidur's H100 (see docs/gpu-validation.md)
    assert layers["Llama-2-7b-hf"] <= 0.115 and layers["Llama-2-70b-hf"] <= 0.115  # 10.4, 10.3


def test_nccl_all_reduce_on_8_gpus_stays_at_its_achieved_level(results):
    achieved = {e["gpu"]: e["calibrated"]["median_ape"] for e in results["nccl_allreduce_8gpu"]}
    assert achieved["A100-SXM4"] <= 0.10  # fit GPU
    assert achieved["B200"] <= 0.10  # the 10 % target, met (9.8 %)
    # not met: int8 cannot take NVLS, and Hopper's ring is faster than the A100 fit says
    assert achieved["H100"] <= 0.16 and achieved["H200"] <= 0.175  # 14.4 %, 16.0 %


def test_targets_exclude_what_a_spec_cannot_know(results):
    targets = {(t["target"], t["gpu"], t["statistic"]): t for t in results["targets"]}
    nccl = "nccl_allreduce_8gpu", "median_ape"
    assert "peer-to-peer" in targets[(nccl[0], "L40S", nccl[1])]["excluded"]
    assert not targets[(nccl[0], "H100", nccl[1])]["excluded"]
    assert targets[(nccl[0], "B200", nccl[1])]["met"]
    assert targets[("attention", "H200", "median_ape")]["met"]
    assert targets[("attention", "H100", "median_ape")]["met"]  # 10.5 % (FA3's own 75 %)
    assert targets[("gemm", "H100", "median_ape")]["met"]


def test_fit_gpu_is_reported_as_such_and_fits_well(results):
    entry = _pooled(results, "A100-SXM4", "gemm")
    assert entry["split"] == "fit" and entry["calibrated"]["median_ape"] <= 0.075
    assert entry["calibrated"]["p90_ape"] <= 0.22


def test_results_are_json_and_the_report_renders(results, tmp_path):
    text = json.dumps(results)
    assert '"schema": "tksim.gpu_validation/1"' in text
    assert results["runtime_s"] < 120
    page = write_gpu_report(results, tmp_path / "gpu.html").read_text()
    assert "tksim-gpu-gemm" in page and "Targets" in page and "datasheet" in page


def test_refit_reproduces_the_shipped_a100_fit():
    fit = fit_a100(load_rows("all"))
    for name in FIT_PARAMETERS:
        assert getattr(fit.params, name) == pytest.approx(getattr(A100_FIT, name), rel=0.02), name


def test_one_dataset_can_be_validated_alone():
    results = run_gpu_validation("vidur")
    assert {e["dataset"] for e in results["metrics"]} == {"vidur"}
    with pytest.raises(KeyError, match="unknown dataset"):
        run_gpu_validation("nope")
