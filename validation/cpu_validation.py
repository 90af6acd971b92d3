"""Validate a calibrated CPU spec on this machine: held-out kernels and held-out models.

:func:`validate_cpu` (what ``tksim validate --hw SPEC`` runs) re-times the ``heldout`` points of
the micro-benchmark sweep (fresh measurements; never used by a fit) and compares each with the
CPU sub-model on the calibrated spec and with the plain roofline on the datasheet spec it came
from; then it captures real runs of models that no calibration uses (:data:`E2E_MODELS`),
simulates them on both specs and compares the total T with the measured wall time of the step,
and replays each capture's own measurements (:class:`sim.cost.MeasuredCostModel`: each op's time
and the host time before it, timed from inside the dispatcher, ``workloads.op_timer``). With
those, each model's step splits into op time and host time, measured and modelled.
The result is a JSON-able dict (:data:`SCHEMA`): per category count, median / p90 APE, bias,
worst cases and the coverage of the calibrated 80 % intervals; per model the errors of T.

Measured wall time: the median over :data:`E2E_CAPTURES` captures of
``meta["unrecorded_wall_s"]``, the fastest of a capture's warm-up steps, which run the model
without the recorder, taken in the machine state of the calibration
(:mod:`validation.machine_state`: the sentinel within its ``STATE_BAND`` of the spec's; the
JSON keeps each capture's state). The recorded steps pay the recorder's Python work per
op (several us, more than most ops here) and leave caches cold between ops; the fastest of
several steps is the one least disturbed by the other tenant of the shared cores.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from sim.cost import CalibratedCostModel, MeasuredCostModel, cost_ops
from sim.cost.cpu_interval import category_interval, result_interval
from sim.errors import InputError, exit_on_input_error
from sim.hardware import HardwareSpec
from sim.simulator import simulate
from sim.spec_library import load_spec
from validation.cpu_calibrate import CALIBRATION_MODELS, WARMUP_STEPS
from validation.cpu_fit import Point, load_points, predict_points
from validation.machine_state import STATE_BAND, captures_in_state
from validation.metrics import summarize_errors
from validation.microbench.suite import run_suite
from validation.microbench.sweeps import build_cases
from validation.microbench.timer import FULL, QUICK

__all__ = ["SCHEMA", "E2E_MODELS", "E2E_CAPTURES", "TARGETS", "FULL_PASSES", "validate_cpu",
           "datasheet_spec", "calibrated_cpu_spec", "time_heldout", "heldout_models",
           "capture_heldout", "error_stats", "main"]

SCHEMA = "tksim.cpu_validation/1"
#: (model, phase, seq) captured for the end-to-end check; none is used by the calibration.
E2E_MODELS = (("gpt2-tiny", "prefill", 64), ("llama-tiny", "decode", 64),
              ("bert-tiny", "prefill", 64), ("llama-tiny", "prefill", 64),
              ("gpt2", "prefill", 64), ("gpt2", "decode", 64))
_QUICK_MODELS = 3
#: Captures of each held-out model; its measured wall is the median of theirs (each the
#: fastest of its warm-up steps): one capture's wall moved by +-3.5 % within a minute
#: (mixtral-tiny prefill, 2026-11-29), and the error of T is read against it.
E2E_CAPTURES = 3
#: Most captures of a held-out model taken to find :data:`E2E_CAPTURES` in the calibration's
#: machine state.
E2E_ATTEMPTS = 3 * E2E_CAPTURES
#: Passes of the held-out sweep in a full validation (one in ``--quick``); a point's time is the
#: median of its passes (``run_suite``). On 2026-11-29 three back-to-back one-pass validations of
#: one spec gave a copy p90 of 27 / 21 / 14 %: single points moved 2-3x between runs (a 2944-
#: element fp32 -> bf16 copy: 2.4 us, then 7.7 us), and the p90 of 20-40 points is its 2nd-4th
#: worst point.
FULL_PASSES = 3
#: Issue 4's targets: (scope, statistic, bound).
TARGETS = (("op", "median_ape", 0.10), ("op", "p90_ape", 0.25), ("model", "ape", 0.10),
           ("replay", "ape", 0.05))
_WORST = 3


def datasheet_spec(spec: HardwareSpec) -> HardwareSpec:
    """The datasheet spec a calibrated spec refines, at the calibrated thread count."""
    cal = spec.cpu_calibration
    return load_spec(cal.datasheet).with_units(cal.threads)


def calibrated_cpu_spec(spec_path_or_name: str, threads: int) -> HardwareSpec:
    """The calibrated CPU spec to validate, checked: a CPU calibration at ``threads``."""
    spec = load_spec(str(spec_path_or_name))
    cal = spec.cpu_calibration
    if spec.kind != "cpu" or cal is None:
        raise InputError(f"{spec.name} has no CPU calibration; run `tksim calibrate --device "
                         "cpu` first", field="--hw")
    if threads != cal.threads:
        raise InputError(f"{spec.name} models {cal.threads} thread(s), not {threads}",
                         field="--threads")
    return spec


def time_heldout(sheet: HardwareSpec, quick: bool, threads: int, progress: bool,
                 seed: int) -> pd.DataFrame:
    """Fresh timings of the sweep's held-out points (module doc), a suite table."""
    cases = [c for c in build_cases(quick=quick, seed=seed) if c.split == "heldout"]
    return run_suite(cases, sheet, QUICK if quick else FULL, threads=threads, seed=seed + 1,
                     progress=progress, passes=1 if quick else FULL_PASSES)


def heldout_models(quick: bool) -> list[tuple[str, str, int]]:
    """(model, phase, seq) of the held-out models a validation captures."""
    models = E2E_MODELS[:_QUICK_MODELS] if quick else E2E_MODELS
    return [m for m in models if m not in CALIBRATION_MODELS]


def capture_heldout(name: str, phase: str, seq: int, threads: int, progress: bool,
                    reference_s: float | None = None, quick: bool = False):
    """:data:`E2E_CAPTURES` real captures of a held-out model taken in the machine state of the
    calibration's sentinel ``reference_s`` (:mod:`validation.machine_state`; up to
    :data:`E2E_ATTEMPTS`, one try each when ``quick``): their traces, walls (each the fastest
    un-recorded warm-up step) and states."""
    from workloads import capture_model

    kept = captures_in_state(
        lambda: capture_model(name, phase=phase, seq=seq, mode="real", threads=threads,
                              warmup=WARMUP_STEPS, repeat=3, host_profile=True,
                              progress=progress),
        E2E_CAPTURES, reference_s, E2E_CAPTURES if quick else E2E_ATTEMPTS, threads=threads)
    return [c.trace for c in kept], [c.wall_s for c in kept], [c.state for c in kept]


def validate_cpu(spec_path_or_name: str, quick: bool = False, threads: int = 1,
                 progress: bool = True, *, seed: int = 0) -> dict:
    """Held-out kernels and models on this machine (module doc); a JSON-able dict."""
    start = time.perf_counter()
    spec = calibrated_cpu_spec(spec_path_or_name, threads)
    cal = spec.cpu_calibration
    sheet = datasheet_spec(spec)
    table = time_heldout(sheet, quick, threads, progress, seed)
    points = load_points(table)
    frame = _point_frame(points, spec, sheet)
    results = {
        "schema": SCHEMA, "spec": spec.name, "spec_path": spec.path, "datasheet": sheet.name,
        "threads": threads, "quick": quick,
        "protocol": _protocol(quick),
        "machine_drift": (table.attrs["sentinel_s"] / cal.sentinel_s - 1
                          if cal.sentinel_s else None),
        "categories": _categories(frame),
        "pooled": _summary(frame),
        "models": [_model(name, phase, seq, spec, sheet, threads, progress, quick)
                   for name, phase, seq in heldout_models(quick)],
        "points": _plot_points(frame),
    }
    results["targets"] = _targets(results)
    results["runtime_s"] = time.perf_counter() - start
    return results


def _protocol(quick: bool) -> dict:
    return {
        "op_split": "held-out points of the micro-benchmark sweep (every third draw of each "
                    "family; never fitted), re-timed fresh" + (
                        " (quick sweep, one pass)" if quick
                        else f" in {FULL_PASSES} passes, the median of each point's passes"),
        "models": "captured real runs of models the calibration never sees; T vs the fastest "
                  f"un-recorded step (meta.unrecorded_wall_s), the median of {E2E_CAPTURES} "
                  "captures taken in the calibration's machine state (sentinel within "
                  f"{STATE_BAND:.0%} of the spec's; machine_states: each kept capture's "
                  "sentinel / the spec's - 1)",
        "datasheet": "plain roofline on the datasheet spec at the same thread count",
        "replay": "each kept capture simulated with its own measurements (measured_s: each op "
                  "timed inside the dispatcher; measured_host_s: the host time before it, less "
                  "the timer's cost per event measured in a loop), the median over the captures "
                  "vs the measured wall",
        "split": "ops: the dispatcher-timed op times vs the model's T less its host part; "
                 "host: the measured time between ops vs the modelled one (t_pre less "
                 "dispatch): the host profile model (sim.cost.cpu_host) on each capture's "
                 "twin-measured warm host times, or the framework term without a profile (the "
                 "Python side of each torch call is host when measured, dispatch when "
                 "modelled)",
        "host_profile": "each held-out capture also times its shrunken twin "
                        "(workloads.host_twin) for warm host times; the cold factor, cold time "
                        "and call overlap were fitted on the calibration models only; "
                        "calibrated_framework_only_s: the same spec without the host profile",
        "interval": "10th-90th percentile of measured / predicted on the calibration's held-out "
                    "points, per category, and of the host part (the host profile model's, "
                    "or the framework term's) over the calibration's captures "
                    "(sim.cost.cpu_interval)",
        "machine_drift": "sentinel kernel time now / at calibration - 1: > 0, the machine is "
                         "slower than when it was calibrated (e.g. the other tenant is busy)",
    }


def _point_frame(points: Sequence[Point], spec: HardwareSpec,
                 sheet: HardwareSpec) -> pd.DataFrame:
    calibrated = predict_points(points, spec)
    model = CalibratedCostModel()
    datasheet = [sum(c.total_s for c in cost_ops(p.ops, sheet, model)) for p in points]
    rows = []
    for p, cal_s, ds_s in zip(points, calibrated, datasheet, strict=True):
        interval = category_interval(spec.cpu_calibration, p.kind)
        rows.append({"key": p.key, "category": p.kind, "measured_s": p.measured_s,
                     "calibrated_s": float(cal_s), "datasheet_s": float(ds_s),
                     "inside": bool(interval.low * cal_s <= p.measured_s
                                    <= interval.high * cal_s)})
    return pd.DataFrame(rows)


def error_stats(predicted: np.ndarray, measured: np.ndarray) -> dict:
    """The error summary of predicted vs measured times (``validation.metrics``), JSON-able."""
    e = summarize_errors(predicted, measured).to_dict()
    return {k: (int(v) if k == "count" else float(v)) for k, v in e.items()}


def _summary(group: pd.DataFrame) -> dict:
    meas = group["measured_s"].to_numpy()
    worst = group.assign(err=np.abs(np.log(group["calibrated_s"] / group["measured_s"])))
    worst = worst.nlargest(_WORST, "err")
    return {"calibrated": error_stats(group["calibrated_s"].to_numpy(), meas),
            "datasheet": error_stats(group["datasheet_s"].to_numpy(), meas),
            "interval_coverage": float(group["inside"].mean()),
            "worst": [{"key": r.key, "measured_s": r.measured_s, "calibrated_s": r.calibrated_s}
                      for r in worst.itertuples()]}


def _categories(frame: pd.DataFrame) -> list[dict]:
    return [{"category": str(c), **_summary(g)} for c, g in frame.groupby("category")]


def _plot_points(frame: pd.DataFrame) -> list[dict]:
    return [{"category": str(c), "key": g["key"].tolist(),
             "measured_s": g["measured_s"].round(12).tolist(),
             "calibrated_s": g["calibrated_s"].round(12).tolist(),
             "datasheet_s": g["datasheet_s"].round(12).tolist()}
            for c, g in frame.groupby("category")]


def _model(name: str, phase: str, seq: int, spec: HardwareSpec, sheet: HardwareSpec,
           threads: int, progress: bool, quick: bool) -> dict:
    """Capture one held-out model for real and compare T with its wall time."""
    traces, walls, states = capture_heldout(name, phase, seq, threads, progress,
                                            spec.cpu_calibration.sentinel_s, quick)
    trace, wall = traces[0], float(np.median(walls))  # the captures issue the same ops
    calibrated = simulate(trace, spec)
    low, high = result_interval(calibrated, spec.cpu_calibration)
    datasheet = simulate(trace, sheet).total_s
    # each capture replayed, the median as for the wall: one capture's timed steps moved its
    # replay by +-5 % (2026-11-29)
    replays = [simulate(t, spec, cost_model=MeasuredCostModel()).total_s for t in traces]
    replay = float(np.median(replays))
    by_category = calibrated.ops.groupby("category")["t_s"].sum()
    # the modelled host: t_pre less dispatch (the framework term, or the host profile's)
    host = float((calibrated.ops["t_pre_s"] - spec.cpu_calibration.dispatch_s).sum())
    unprofiled = simulate(trace, dataclasses.replace(spec, cpu_calibration=dataclasses.replace(
        spec.cpu_calibration, host_profile=None))).total_s
    return {"model": name, "phase": phase, "seq": seq, "ops": len(trace),
            "measured_s": wall, "measured_walls_s": walls, "machine_states": states,
            "recorded_wall_s": float(trace.meta["measured_wall_s"]),
            "calibrated_s": calibrated.total_s, "datasheet_s": datasheet,
            "replay_s": replay, "replays_s": replays,
            "interval_s": [low, high], "inside": bool(low <= wall <= high),
            "calibrated_error": calibrated.total_s / wall - 1,
            "datasheet_error": datasheet / wall - 1,
            "replay_error": replay / wall - 1,
            "calibrated_by_category_s": {str(k): float(v) for k, v in by_category.items()},
            "host_profile": trace.meta.get("host_profile"),
            "calibrated_framework_only_s": unprofiled,
            "framework_only_error": unprofiled / wall - 1,
            **_split(traces, calibrated.total_s - host, host)}


def _split(traces, model_ops_s: float, model_host_s: float) -> dict:
    """The step's time split into ops and host, measured (traces timed from inside the
    dispatcher: ``workloads.op_timer``; the median over the captures) and modelled (ops with
    their dispatch; the host profile's host time, or the framework term without one): where
    the error of T comes from. The boundaries differ by the Python side of each torch call
    (argument parsing, wrapping the result), measured as host and modelled as dispatch (the
    host profile subtracts it: ``call_overlap``)."""
    timer = traces[0].meta.get("op_timer", "python")
    out = {"op_timer": timer, "calibrated_ops_s": model_ops_s,
           "calibrated_host_s": model_host_s}
    if all(t.meta.get("op_timer") == "dispatcher" for t in traces):
        parts = [[float(t.meta[k]) for k in ("sum_measured_s", "measured_host_s",
                                              "measured_host_after_s")] for t in traces]
        ops, host, after = (float(v) for v in np.median(parts, axis=0))
        out.update({"measured_ops_s": ops, "measured_host_s": host,
                    "measured_host_after_s": after, "measured_parts_s": parts,
                    "ops_error": model_ops_s / ops - 1,
                    "host_error": model_host_s / host - 1})
    return out


def _targets(results: dict) -> list[dict]:
    out = []
    for scope, stat, bound in TARGETS:
        if scope == "op":
            for entry in results["categories"]:
                value = entry["calibrated"][stat]
                out.append({"target": f"op {stat} <= {bound:.0%}", "what": entry["category"],
                            "value": value, "datasheet_value": entry["datasheet"][stat],
                            "met": bool(value <= bound)})
            continue
        key = "calibrated_error" if scope == "model" else "replay_error"
        for m in results["models"]:
            value = abs(m[key])
            out.append({"target": f"{scope} |error| <= {bound:.0%}",
                        "what": f"{m['model']} {m['phase']}", "value": value,
                        "datasheet_value": abs(m["datasheet_error"]), "met": bool(value <= bound)})
    return out


def main(argv: list[str] | None = None) -> None:
    """``python -m validation.cpu_validation --hw SPEC [--quick] [--json F] [--html F]``."""
    import argparse
    import json

    from sim.files import write_atomic
    from validation.cpu_report import cpu_results_markdown, write_cpu_report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hw", required=True, help="calibrated CPU spec (name or path)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", default=None, help="write the results JSON here")
    parser.add_argument("--html", default=None, help="write the HTML report here")
    args = parser.parse_args(argv)
    results = validate_cpu(args.hw, quick=args.quick, threads=args.threads)
    print(cpu_results_markdown(results), end="")
    print(f"runtime {results['runtime_s']:.1f} s")
    if args.json:
        write_atomic(args.json, json.dumps(results, indent=1))
    if args.html:
        write_cpu_report(results, args.html)


if __name__ == "__main__":
    exit_on_input_error(main)
