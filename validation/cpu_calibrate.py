"""Calibrate this machine's CPU: time the micro-benchmark suite, fit the CPU sub-model, write a
calibrated spec file (and the measurements as CSV) with provenance.

``calibrate_cpu(threads=1, quick=False, out_path=...)`` is what ``tksim calibrate --device cpu``
runs: :mod:`validation.microbench` (every op family over its shape sweep, timed robustly on
``threads`` torch threads), :func:`validation.cpu_fit.fit_cpu` on the ``fit`` split, the
per-category prediction intervals from the ``heldout`` split (:mod:`sim.cost.cpu_interval`),
the ``framework`` terms from real captures of :data:`CALIBRATION_MODELS` (a model's own Python
between its ops, which no micro-benchmark runs: the mean gap per Python-level torch call between
the step's wall time and the ops' predicted sum), the host profile model from the same captures
(:mod:`sim.cost.cpu_host`: how much slower than on the model's shrunken twin the host runs as
the step leaves its code cold), and
:func:`validation.cpu_spec_file.write_calibrated_spec`. Every number of the written spec cites
a ``calibration`` source naming the host, CPU, torch version, date, threads, sample counts and
fit residuals. ``python -m validation.cpu_calibrate --help`` runs it from the shell.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sim.cost.cpu_host import cold_fraction
from sim.cost.cpu_interval import FRAMEWORK, HOST_PROFILE, POOLED
from sim.cpu_calibration import HostProfileModel, Interval
from sim.errors import InputError, exit_on_input_error
from sim.files import write_atomic
from sim.hardware import HardwareSpec
from sim.spec_library import load_spec
from validation.cpu_cold_calls import cold_sentence
from validation.cpu_fit import Point, fit_cpu, load_points, predict_points
from validation.cpu_in_situ import in_situ_rows
from validation.cpu_sessions import combine_suites, read_suite, suite_header
from validation.cpu_spec_file import write_calibrated_spec
from validation.machine_state import captures_in_state
from validation.metrics import summarize_errors
from validation.microbench.suite import run_suite
from validation.microbench.sweeps import build_cases
from validation.microbench.timer import FULL, QUICK

__all__ = ["calibrate_cpu", "refit_cpu", "default_spec_path", "heldout_intervals", "DATASHEET",
           "main"]

DATASHEET = "amd-epyc-zen5"  # this machine's datasheet spec
#: (model, phase, seq) whose real runs fit the framework term; the validation holds out others.
CALIBRATION_MODELS = (("mixtral-tiny", "prefill", 64), ("mixtral-tiny", "decode", 64),
                      ("opt-125m", "prefill", 64), ("opt-125m", "decode", 64))
#: The calibration models whose wall fits the per-call terms (``framework``, ``call_overlap``):
#: tiny steps, where a model's op-time error is small against its host time.
FRAMEWORK_MODELS = CALIBRATION_MODELS[:2]
#: Captures of each other calibration model (they fit the host profile's cold terms).
HOST_CAPTURES = 3
#: Cold times (s) the host profile's fit tries (:func:`fit_host_profile`).
HOST_COLD_TIMES_S = tuple(float(t) for t in np.geomspace(1e-4, 0.1, 31))
#: Un-recorded warm-up steps of a capture; its wall time is the fastest (least disturbed).
WARMUP_STEPS = 10
#: Captures of each calibration model whose median wall the framework term is fitted to: the
#: term is the small difference of two large times, so one capture's noise moves it a lot
#: (2026-11-29: six captures of mixtral-tiny prefill within a minute, 1949-2086 us, would have
#: given 0.9-1.3 us per call; two calibrations 13 minutes apart fitted 1.32 and 1.66).
FRAMEWORK_CAPTURES = 5
#: Most captures of a framework model taken to find :data:`FRAMEWORK_CAPTURES` in the suite's
#: machine state (:mod:`validation.machine_state`).
FRAMEWORK_ATTEMPTS = 3 * FRAMEWORK_CAPTURES
_REPO = Path(__file__).resolve().parent.parent
_INTERVAL_PERCENTILES = (10, 90)


def default_spec_path(threads: int, datasheet: str = DATASHEET) -> Path:
    """``hw_specs/calibrated/<datasheet>-<threads>t.yaml``."""
    return _REPO / "hw_specs" / "calibrated" / f"{datasheet}-{threads}t.yaml"


def calibrate_cpu(threads: int = 1, quick: bool = False, out_path: str | Path | None = None,
                  progress: bool = True, *, datasheet: str = DATASHEET,
                  csv_path: str | Path | None = None, seed: int = 0) -> Path:
    """Measure, fit and write the calibrated spec (module doc); return its path. The CSV of
    the measurements goes to ``csv_path`` (default: next to the spec, ``.csv.gz``)."""
    start = time.perf_counter()
    base = _datasheet(datasheet, threads)
    out = Path(out_path) if out_path is not None else default_spec_path(threads, base.name)
    csv = Path(csv_path) if csv_path is not None else out.with_suffix(".csv.gz")
    for path in (out, csv):
        if not path.parent.is_dir():
            raise InputError("output directory does not exist", source=str(path), field="-o")
    plan = QUICK if quick else FULL
    table = run_suite(build_cases(quick=quick, seed=seed), base.with_units(threads), plan,
                      threads=threads, seed=seed, progress=progress)
    captures = calibration_captures(threads, progress, table.attrs["sentinel_s"], quick)
    table = with_in_situ(table, captures)
    measured = (f"{'quick' if quick else 'full'} sweep, {plan.rounds} interleaved rounds each, "
                f"median per point; in-situ points from the calibration models' captures")
    return _fit_and_write(table, base, threads, out, csv, measured, start, progress, quick,
                          captures)


def with_in_situ(table: pd.DataFrame, captures: dict) -> pd.DataFrame:
    """The suite's ``table`` and the in-situ rows of ``captures``
    (:mod:`validation.cpu_in_situ`), its attributes kept."""
    rows = in_situ_rows(captures)
    if rows.empty:
        return table
    both = pd.concat([table, rows], ignore_index=True)
    both.attrs.update(table.attrs)
    return both


def refit_cpu(csv_in: str | Path | Sequence[str | Path], threads: int = 1,
              out_path: str | Path | None = None, progress: bool = True, *,
              datasheet: str = DATASHEET, csv_path: str | Path | None = None) -> Path:
    """Fit and write the calibrated spec from the measurements of an earlier calibration (its
    CSV, ``csv_in``) without re-timing them: deterministic, for changes of the model or the
    fit. Several CSVs (timings of one suite in several sessions) are fitted as one, each
    point at its median over them (:mod:`validation.cpu_sessions`). The framework term and the
    host profile model are kept from the spec being replaced (measured in the same session as
    those kernels; re-measuring them alone would mix sessions, and on these shared machines the
    framework term moves by +-15 % between sessions); with no spec there yet, or none in it,
    they are measured."""
    start = time.perf_counter()
    paths = [Path(csv_in)] if isinstance(csv_in, (str, Path)) else [Path(p) for p in csv_in]
    base = _datasheet(datasheet, threads)
    out = Path(out_path) if out_path is not None else default_spec_path(threads, base.name)
    csv = Path(csv_path) if csv_path is not None else out.with_suffix(".csv.gz")
    table = combine_suites([read_suite(p) for p in paths])
    replaced = load_spec(str(out)) if out.is_file() else None
    previous = replaced.cpu_calibration if replaced is not None else None
    table.attrs["sentinel_s"] = previous.sentinel_s if previous is not None else 0.0
    if previous is not None:
        table.attrs["framework"] = (previous.framework_s, previous.intervals.get(FRAMEWORK), (
            f" Framework term {previous.framework_s * 1e6:.2f} us per call, kept from the "
            "calibration whose measurements this re-fits."))
    if previous is not None and previous.host_profile is not None:
        kept = _kept_sentence(replaced)
        table.attrs["host_profile"] = (previous.host_profile,
                                       previous.intervals.get(HOST_PROFILE), kept)
    sources = "; ".join(f"{p.name} ({suite_header(p).split(' Method:')[0] or 'no provenance'})"
                        for p in paths)
    measured = (f"re-fitted from the measurements of {sources}" if len(paths) == 1 else
                f"re-fitted from each point's median over {len(paths)} timings of the suite: "
                f"{sources}")
    return _fit_and_write(table, base, threads, out, csv, measured, start, progress)


def _kept_sentence(replaced: HardwareSpec) -> str:
    """The provenance of a kept host profile model: its own sentence from the spec replaced."""
    text = replaced.sources.get("calibration", "")
    own = text[text.find(" Host profile model:"):] if " Host profile model:" in text else ""
    factor = replaced.cpu_calibration.host_profile.cold_factor
    return own or (f" Host profile model (cold factor {factor:.2f}) kept from the calibration "
                   "whose measurements this re-fits.")


def _fit_and_write(table: pd.DataFrame, base: HardwareSpec, threads: int, out: Path, csv: Path,
                   measured: str, start: float, progress: bool, quick: bool = False,
                   captures: dict | None = None) -> Path:
    points = load_points(table)
    cal = dataclasses.replace(fit_cpu(points, base, threads), datasheet=base.name,
                              sentinel_s=table.attrs["sentinel_s"])
    spec = dataclasses.replace(base.with_units(threads), cpu_calibration=cal)
    predicted = predict_points(points, spec)
    cal = dataclasses.replace(cal, intervals=heldout_intervals(points, predicted))
    spec = dataclasses.replace(spec, cpu_calibration=cal)
    framework, host = table.attrs.get("framework"), table.attrs.get("host_profile")
    if framework is None or host is None:
        if captures is None:
            captures = calibration_captures(threads, progress, table.attrs["sentinel_s"], quick)
        framework = framework or fit_framework(spec, captures)
        host = host or fit_host_profile(spec, captures)
    framework_s, framework_interval, gaps = framework
    if framework_interval is not None:
        cal = dataclasses.replace(cal, intervals={**cal.intervals, FRAMEWORK: framework_interval})
    host_model, host_interval, host_sentence = host
    cal = dataclasses.replace(cal, framework_s=framework_s, host_profile=host_model)
    if host_interval is not None:
        cal = dataclasses.replace(cal, intervals={**cal.intervals, HOST_PROFILE: host_interval})
    provenance = _provenance(points, predicted, threads=threads, measured=measured,
                             seconds=time.perf_counter() - start, datasheet=base.name) + gaps + (
        host_sentence) + cold_sentence(points, *_first_and_rest(table), spec)
    write_calibrated_spec(out, base, cal, name=f"{base.name}-{threads}t", provenance=provenance)
    _write_csv(csv, table.assign(predicted_s=predicted), provenance)
    return out


def _datasheet(name: str, threads: int) -> HardwareSpec:
    spec = load_spec(name)
    if spec.kind != "cpu":
        raise InputError(f"{name} is a {spec.kind} spec; calibrate_cpu measures this CPU",
                         field="--hw")
    most = min(spec.compute.num_units, os.cpu_count() or 1)
    if not 1 <= threads <= most:
        raise InputError(f"must be between 1 and {most} on this machine, got {threads}",
                         field="--threads")
    return spec


def calibration_captures(threads: int, progress: bool, reference_s: float | None = None,
                         quick: bool = False) -> dict[tuple[str, str, int], list]:
    """Real captures with a host profile of each of :data:`CALIBRATION_MODELS`, taken in the
    state of the suite's sentinel ``reference_s`` (:mod:`validation.machine_state`):
    :data:`FRAMEWORK_CAPTURES` of each :data:`FRAMEWORK_MODELS` (up to
    :data:`FRAMEWORK_ATTEMPTS`), :data:`HOST_CAPTURES` of the others (up to 3x)."""
    from workloads import capture_model

    out = {}
    for name, phase, seq in CALIBRATION_MODELS:
        count = FRAMEWORK_CAPTURES if (name, phase, seq) in FRAMEWORK_MODELS else HOST_CAPTURES
        out[(name, phase, seq)] = captures_in_state(
            lambda name=name, phase=phase, seq=seq: capture_model(
                name, phase=phase, seq=seq, mode="real", threads=threads, warmup=WARMUP_STEPS,
                repeat=1, host_profile=True, progress=progress),
            count, reference_s, count if quick else 3 * count, threads=threads)
    return out


def fit_framework(spec: HardwareSpec, captures: dict) -> tuple[float, Interval | None, str]:
    """Seconds of model Python per Python-level torch call (``host_calls``,
    :mod:`workloads.host_calls`) for a trace with no host profile: the mean over
    :data:`FRAMEWORK_MODELS` of (wall - T) / calls, T without the term, at least 0, the wall the
    median of the model's ``captures`` (:func:`calibration_captures`); its interval, the 10th
    and 90th percentile over every capture of that capture's (wall - T) / calls over the term
    (None for a term of 0); and a sentence for the provenance."""
    from sim.cost.cpu import host_calls
    from sim.simulator import simulate

    spec = dataclasses.replace(spec, cpu_calibration=dataclasses.replace(
        spec.cpu_calibration, framework_s=0.0, host_profile=None))
    gaps, each, parts = [], [], []
    for (name, phase, seq), kept in captures.items():
        if (name, phase, seq) not in FRAMEWORK_MODELS:
            continue
        walls = [c.wall_s for c in kept]
        wall, trace = float(np.median(walls)), kept[0].trace
        calls = sum(host_calls(op) for op in trace.ops)
        kernels = simulate(trace, spec).total_s
        gaps.append((wall - kernels) / calls)
        each += [(w - kernels) / calls for w in walls]
        parts.append(f"{name} {phase} (s={seq}, {len(trace)} ops, {calls:.0f} calls, wall "
                     f"{wall * 1e6:.0f} us, {min(walls) * 1e6:.0f}-{max(walls) * 1e6:.0f} over "
                     f"{len(walls)} captures, sentinel {_states(kept)}): "
                     f"{gaps[-1] * 1e6:.2f} us/call")
    framework = max(0.0, float(np.mean(gaps)))
    interval = None
    if framework > 0:
        low, high = (float(np.percentile(each, q)) / framework for q in _INTERVAL_PERCENTILES)
        interval = Interval(max(low, 0.0), max(high, 0.0), count=len(each))
    return framework, interval, (
        f" Framework term {framework * 1e6:.2f} us per Python-level torch call, the mean of "
        f"(wall - predicted T) / calls over {'; '.join(parts)}.")


@dataclasses.dataclass(frozen=True)
class _HostSample:
    """One capture's host profile against its measured host time (:func:`fit_host_profile`)."""

    model: tuple[str, str, int]
    warm: np.ndarray  # warm host time before each op (the twin's)
    since: np.ndarray  # predicted kernel time since each op's code last ran
    t_calc: np.ndarray
    calls: float
    measured_s: float  # the measured host time before the ops, in all
    wall_s: float

    def cold(self, cold_time: float) -> np.ndarray:
        """Each op's cold fraction (:func:`sim.cost.cpu_host.cold_fraction`)."""
        return cold_fraction(self.since, cold_time)


def fit_host_profile(spec: HardwareSpec,
                     captures: dict) -> tuple[HostProfileModel | None, Interval | None, str]:
    """The host-time model of :mod:`sim.cost.cpu_host` from ``captures``
    (:func:`calibration_captures`): ``cold_time`` on a log grid and, for each, ``cold_factor``
    (at least 0) by least squares on every capture's host time in all, relative, each model
    weighing the same; then
    ``call_overlap``, the mean over :data:`FRAMEWORK_MODELS` of (predicted T - wall) / calls
    with no overlap, at least 0. Only captures timed from inside the dispatcher with a host
    profile count (none without a C++ toolchain: then no model, None). Also the 10th-90th
    percentile of measured / predicted host time over the captures (``intervals.host_profile``)
    and a sentence for the provenance."""
    from sim.cost.cpu import host_calls
    from sim.cost.cpu_host import has_profile, since_last_run
    from sim.cost.model import CalibratedCostModel, cost_ops

    bare = dataclasses.replace(spec, cpu_calibration=dataclasses.replace(
        spec.cpu_calibration, host_profile=None))
    samples = []
    for model, kept in captures.items():
        for c in kept:
            ops = c.trace.ops
            if not has_profile(ops) or any(op.measured_host_s is None for op in ops):
                continue
            t_calc = np.array([k.t_calc_s for k in cost_ops(ops, bare, CalibratedCostModel())])
            samples.append(_HostSample(
                model, np.array([op.warm_host_s for op in ops]),
                np.array(since_last_run(ops, t_calc)), t_calc,
                sum(host_calls(op) for op in ops), sum(op.measured_host_s for op in ops),
                c.wall_s))
    if not samples:  # no C++ toolchain: no dispatcher timer, no host times to fit
        return None, None, (" No host profile model: no calibration capture was timed from "
                            "inside the dispatcher with a host profile.")
    base = np.array([s.warm.sum() / s.measured_s for s in samples])  # W / M
    weight = np.array([1 / sum(t.model == s.model for t in samples) for s in samples])
    best = None
    for cold_time in HOST_COLD_TIMES_S:
        slope = np.array([s.warm @ s.cold(cold_time) / s.measured_s for s in samples])
        factor = (max(0.0, float((weight * slope) @ (1 - base) / ((weight * slope) @ slope)))
                  if slope.any() else 0.0)
        loss = float(weight @ (base + factor * slope - 1) ** 2)
        if best is None or loss < best[0]:
            best = (loss, cold_time, factor, base + factor * slope - 1)
    _, cold_time, factor, errors = best
    overlaps = []
    dispatch = spec.cpu_calibration.dispatch_s
    for s in samples:
        if s.model in FRAMEWORK_MODELS:
            host = s.warm * (1 + factor * s.cold(cold_time))
            predicted = float(np.sum(s.t_calc + np.maximum(0.0, dispatch + host)))
            overlaps.append((predicted - s.wall_s) / s.calls)
    overlap = max(0.0, float(np.mean(overlaps))) if overlaps else 0.0
    model = HostProfileModel(factor, cold_time, overlap)
    ratios = 1 / (1 + errors)  # measured / predicted, each capture's host time
    interval = Interval(*(float(np.percentile(ratios, q)) for q in _INTERVAL_PERCENTILES),
                        count=len(ratios))
    fits = "; ".join(f"{s.model[0]} {s.model[1]} {s.measured_s * 1e6:.0f} us {e:+.0%}"
                     for s, e in zip(samples, errors, strict=True))
    return model, interval, (
        f" Host profile model: cold factor {factor:.2f}, cold time {cold_time * 1e3:.3g} ms "
        f"(least squares on the measured host time of {len(samples)} captures with a host "
        f"profile; host time and its fit error: {fits}); call overlap {overlap * 1e6:.2f} us "
        f"per call, the mean (predicted T - wall) / calls over {len(overlaps)} captures of "
        f"{', '.join(f'{n} {p}' for n, p, _ in FRAMEWORK_MODELS)}.")


def _states(kept) -> str:
    """The machine states of kept captures, for a provenance sentence."""
    states = [c.state for c in kept]
    return f"{min(states):+.0%} to {max(states):+.0%} of the suite's"


def heldout_intervals(points: Sequence[Point], predicted: np.ndarray) -> dict[str, Interval]:
    """Per category (and pooled, ``all``): 10th / 90th percentile of measured / predicted over
    the held-out points (:mod:`sim.cost.cpu_interval`)."""
    ratios = pd.DataFrame({"category": [p.kind for p in points],
                           "split": [p.split for p in points],
                           "ratio": [p.measured_s / q for p, q in zip(points, predicted,
                                                                      strict=True)]})
    held = ratios[ratios["split"] == "heldout"]
    groups = [*held.groupby("category")["ratio"], (POOLED, held["ratio"])]
    return {str(c): Interval(*(float(np.percentile(r, q)) for q in _INTERVAL_PERCENTILES),
                             count=len(r)) for c, r in groups if len(r)}


def _residuals(points: Sequence[Point], predicted: np.ndarray, split: str) -> str:
    rows = [(p.kind + (" in situ" if p.kernel_only else ""), p.measured_s, q)
            for p, q in zip(points, predicted, strict=True) if p.split == split]
    frame = pd.DataFrame(rows, columns=["category", "measured", "predicted"])
    parts = []
    for category, group in frame.groupby("category"):
        e = summarize_errors(group["predicted"], group["measured"])
        parts.append(f"{category} {e.count} pts median APE {e.median_ape:.1%} p90 "
                     f"{e.p90_ape:.1%}")
    return "; ".join(parts)


def _first_and_rest(table: pd.DataFrame) -> tuple[list, list]:
    """Each row's first-call and other-calls time (None where the table has none)."""
    def column(name: str) -> list:
        return table[name].tolist() if name in table else [None] * len(table)

    return column("first_s"), column("rest_s")


def _provenance(points, predicted, *, threads, measured, seconds, datasheet) -> str:
    import torch

    from workloads.capture_env import host_description

    fit = sum(p.split == "fit" for p in points)
    return (f"Measured and fitted by tksim validation.calibrate_cpu on host {platform.node()}, "
            f"{host_description()}, torch {torch.__version__}, "
            f"{dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}, {threads} torch "
            f"thread(s), datasheet spec {datasheet}, {len(points)} points ({fit} fit, "
            f"{len(points) - fit} held out), {measured}; calibration took {seconds:.0f} s. "
            f"Method: docs/cpu-validation.md. Fit residuals: {_residuals(points, predicted, 'fit')}"
            f". Held-out: {_residuals(points, predicted, 'heldout')}.")


def _write_csv(path: Path, table: pd.DataFrame, provenance: str) -> None:
    header = "".join(f"# {line}\n" for line in ("tksim CPU micro-benchmark points", provenance))
    # floats as Python writes them (the shortest repr that reads back exactly): a re-fit of
    # the file (``--refit``) then starts from the same numbers as the fit that wrote it (with
    # 6 digits it did not: page-fault bandwidth 4.3 against 21.3 GB/s, 2026-11-29)
    write_atomic(path, header + table.to_csv(index=False))


def main(argv: list[str] | None = None) -> None:
    """``python -m validation.cpu_calibrate [--threads N] [--quick] [-o SPEC] [--csv F]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("-o", "--output", default=None)
    parser.add_argument("--csv", default=None)
    parser.add_argument("--datasheet", default=DATASHEET)
    parser.add_argument("--refit", default=None, nargs="+", metavar="CSV",
                        help="fit the measurements of an earlier calibration, or each point's "
                        "median over several; no re-timing")
    args = parser.parse_args(argv)
    if args.refit:
        path = refit_cpu(args.refit, args.threads, args.output, datasheet=args.datasheet,
                         csv_path=args.csv)
    else:
        path = calibrate_cpu(args.threads, args.quick, args.output, datasheet=args.datasheet,
                             csv_path=args.csv)
    print(f"wrote {path}")


if __name__ == "__main__":
    exit_on_input_error(main)
