"""The committed calibrated spec against fresh measurements of held-out kernels on this machine,
and (slow) the whole quick calibrate + validate path that CI runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from sim.spec_library import load_spec
from validation.cpu_fit import load_points, predict_points
from validation.microbench.suite import run_suite
from validation.microbench.sweeps import build_cases
from validation.microbench.timer import TimingPlan

COMMITTED = Path(__file__).parent.parent / "hw_specs" / "calibrated" / "amd-epyc-zen5-1t.yaml"
#: Small, fast held-out families (no large GEMMs), a few points each.
FAMILIES = ("linear", "sdpa_decode", "add", "gelu", "softmax", "layer_norm", "cat", "view")
#: Tolerance on the median APE of these points. Measured spread (docs/cpu-validation.md):
#: back-to-back runs on an idle machine agree to ~2 % (median |log ratio|), but the other
#: tenant of the two shared cores moves memory-bound kernels by 10-20 % between runs, and
#: the committed spec's own held-out median APE is ~5-10 %; 25 % leaves room for both.
MEDIAN_APE_TOLERANCE = 0.25


def test_committed_spec_predicts_fresh_heldout_kernels():
    spec = load_spec(str(COMMITTED))
    cases = [c for c in build_cases(quick=True, families=FAMILIES) if c.split == "heldout"
             and not (c.category == "gemm" and c.shape["m"] * c.shape["n"] * c.shape["k"]
                      > 2e7)]
    plan = TimingPlan(rounds=7, block_target_s=100e-6, warmup_s=1e-3)
    table = run_suite(cases, load_spec("amd-epyc-zen5", units=1), plan, seed=7,
                      progress=False)
    points = load_points(table)
    predicted = predict_points(points, spec)
    measured = np.array([p.measured_s for p in points])
    ape = np.abs(predicted / measured - 1)
    assert len(points) >= 15
    assert np.median(ape) <= MEDIAN_APE_TOLERANCE, sorted(zip(ape, table["key"], strict=True))[-5:]


@pytest.mark.slow
def test_quick_calibrate_and_validate_end_to_end(tmp_path):
    from sim.spec_library import load_spec
    from validation import calibrate_cpu, validate_cpu, write_cpu_report
    from validation.cpu_calibrate import FRAMEWORK_CAPTURES, refit_cpu

    spec_path = calibrate_cpu(threads=1, quick=True, out_path=tmp_path / "cpu.yaml",
                              progress=False)
    assert spec_path.is_file() and spec_path.with_suffix(".csv.gz").is_file()
    # the written measurements re-fit to the same spec (the CSV keeps every digit)
    refit = refit_cpu(spec_path.with_suffix(".csv.gz"), threads=1,
                      out_path=tmp_path / "refit.yaml", progress=False)
    fitted, again = (load_spec(str(p)).cpu_calibration for p in (spec_path, refit))
    assert again.gemm == fitted.gemm and again.levels == fitted.levels
    assert again.element_s == fitted.element_s and again.attention == fitted.attention
    # the framework term's interval: over every capture of the framework models
    framework = fitted.intervals["framework"]
    assert framework.count == 2 * FRAMEWORK_CAPTURES and 0 <= framework.low <= framework.high
    results = validate_cpu(spec_path, quick=True, threads=1, progress=False)
    json.dumps(results)  # JSON-able
    assert results["schema"] == "tksim.cpu_validation/1"
    assert {c["category"] for c in results["categories"]} >= {"gemm", "elementwise"}
    assert all(math.isfinite(m["calibrated_s"]) and m["measured_s"] > 0
               for m in results["models"])
    for m in results["models"]:
        if m["op_timer"] != "dispatcher":  # no C++ toolchain here: the recorder's times
            continue
        # on a CPU the replay runs each op's measured host time, then the op, one after the
        # other: exactly each capture's measured parts but the host time after its last op
        assert len(m["replays_s"]) == len(m["measured_parts_s"]) == len(m["measured_walls_s"])
        for replay, (ops, host, after) in zip(m["replays_s"], m["measured_parts_s"],
                                              strict=True):
            assert replay == pytest.approx(ops + host - after, rel=1e-9)
            assert ops > 0 and host > 0
        assert m["replay_s"] == pytest.approx(float(np.median(m["replays_s"])))
    page = write_cpu_report(results, tmp_path / "report.html")
    assert "Held-out models" in page.read_text()


def test_a_run_out_of_the_calibration_state_says_so():
    from validation.cpu_report import state_warning
    from validation.machine_state import STATE_BAND

    assert state_warning({"machine_drift": STATE_BAND / 2}) == ""
    assert state_warning({"machine_drift": None}) == ""
    warning = state_warning({"machine_drift": 0.22})
    assert "out of the spec's calibration state" in warning and "+22.0%" in warning
    assert state_warning({"machine_drift": -2 * STATE_BAND}) != ""
