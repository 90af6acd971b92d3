"""The main job on built-in defaults (``tksim demo``, the README's first command).

Capture a small real Transformer forward on this CPU (with its host profile:
``workloads.host_twin``), simulate the trace on a GPU spec and on this CPU's spec, print the
decomposition of T for each, compare the CPU prediction with the measured wall time, and write
an HTML report, a JSON summary and a Perfetto timeline.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from sim.cost import MeasuredCostModel
from sim.errors import InputError
from sim.files import write_atomic
from sim.report import write_html, write_perfetto
from sim.report.summary import summary
from sim.report.tables import format_report
from sim.simulator import simulate
from sim.spec_library import load_spec
from sim.trace import Trace, write_trace
from sim.units import format_quantity

__all__ = ["run_demo", "DEFAULT_HW", "THREADS"]

#: This machine's CPU calibrated by ``tksim calibrate`` (committed, with its measurements).
CALIBRATED_CPU = str(Path(__file__).resolve().parent.parent / "hw_specs" / "calibrated"
                     / "amd-epyc-zen5-1t.yaml")
DEFAULT_HW = ("nvidia-h100-sxm5-80gb", CALIBRATED_CPU)
DATASHEET_CPU = "amd-epyc-zen5"
THREADS = 1  # one torch thread: on these shared 2-core machines more threads swing timings 10x
REPEAT = 3  # recorded forwards; each op's measured_s is its median (one run has outliers)
WARMUP = 3  # un-recorded forwards first; the measured wall is the fastest (the first runs cold)


def run_demo(
    *,
    model: str,
    batch: int,
    seq: int,
    hw: Sequence[str] | None,
    out_dir: str,
    capture: Callable[..., Trace],
) -> list:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError("exists and is not a directory", source=str(out), field="--out")
    print(f"capturing {model} forward (batch {batch}, seq {seq}) on this CPU, "
          f"{THREADS} thread ...", flush=True)
    trace = capture(model, batch=batch, seq=seq, dtype="fp32", threads=THREADS, warmup=WARMUP,
                    repeat=REPEAT, host_profile=True)  # its host time, on the calibrated CPU
    specs = [_spec(name) for name in (hw or DEFAULT_HW)]
    results = [simulate(trace, spec) for spec in specs]
    for result in results:
        print()
        print(format_report(result))
    _compare_with_measurement(trace, results, specs)
    out.mkdir(parents=True, exist_ok=True)
    write_trace(trace, out / "trace.json.gz")
    write_html(results, out / "report.html", title=f"tksim demo: {model} prefill")
    write_perfetto(results[0], out / "timeline.perfetto.json")
    data = {"results": [summary(r) for r in results]}
    write_atomic(out / "summary.json", json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(f"\nwrote {out}/report.html, summary.json, timeline.perfetto.json (open in "
          "ui.perfetto.dev), trace.json.gz")
    return results


def _spec(name: str):
    spec = load_spec(name)
    return spec.with_units(THREADS) if spec.kind == "cpu" else spec


def _compare_with_measurement(trace: Trace, results, specs) -> None:
    # the forward timed without the recorder: the recorder's own per-op overhead is not the model's
    wall = trace.meta.get("unrecorded_wall_s") or trace.meta.get("measured_wall_s")
    if not wall:
        return
    # replayed on a CPU: its host times and ops run one after the other, as they did here
    here = next((spec for spec in specs if spec.kind == "cpu"), None) or _spec(DATASHEET_CPU)
    replay = simulate(trace, here, cost_model=MeasuredCostModel()).total_s
    print(f"\nmeasured on this CPU: wall {format_quantity(wall, 's')} (forward without the "
          f"recorder); replay of the per-op measurements {format_quantity(replay, 's')} "
          f"({replay / wall - 1:+.1%})")
    cpu = [(spec, result) for spec, result in zip(specs, results, strict=True)
           if spec.kind == "cpu"]
    if any(spec.cpu_calibration is not None for spec, _ in cpu):
        datasheet = _spec(DATASHEET_CPU)  # what calibration buys: the same CPU, datasheet only
        cpu.insert(0, (datasheet, simulate(trace, datasheet)))
    for spec, result in cpu:
        label = ("calibrated on this machine" if spec.cpu_calibration is not None
                 else "datasheet spec, not calibrated")
        error = result.total_s / wall - 1
        print(f"predicted on {result.hw} ({THREADS} core, {label}): "
              f"{format_quantity(result.total_s, 's')} ({error:+.1%} vs measured wall)")
        _per_op_errors(trace, result, label)


def _per_op_errors(trace: Trace, result, label: str) -> None:
    """Per category: how far each op's predicted time is from its measured duration. An op timed
    inside the dispatcher (``meta["op_timer"]``) is its body alone: it compares with t_calc; an
    op timed by the recorder from Python also holds host time: it compares with t_i."""
    from validation import summarize_errors  # validation builds on sim, not the reverse

    inside = trace.meta.get("op_timer") == "dispatcher"
    predicted = "t_calc_s" if inside else "t_s"
    measured = [op.measured_s or 0.0 for op in trace.ops]
    ops = result.ops.assign(measured_s=measured)
    ops = ops[(ops.measured_s > 0) & (ops.category != "view")]
    what = ("predicted t_calc vs measured op time (inside the dispatcher; an op of a few us "
            "also holds\n  part of the dispatch the model counts in t_pre)" if inside
            else "predicted t_i vs measured")
    print(f"  per-op error, {result.hw} ({label}): {what}")
    print(f"  {'category':<14}{'ops':>6}{'median APE':>12}{'p90 APE':>10}{'bias':>9}")
    for category, group in ops.groupby("category", sort=True):
        e = summarize_errors(group[predicted].to_numpy(), group.measured_s.to_numpy())
        print(f"  {category:<14}{e.count:>6}{e.median_ape:>12.0%}{e.p90_ape:>10.0%}"
              f"{e.bias:>+9.0%}")
