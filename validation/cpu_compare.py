"""Compare calibrated CPU specs on the same fresh measurements: a paired A/B of two model or fit
versions.

Two validations of two specs differ by the machine as much as by the specs: on this project's
shared 2-core machine, the held-out p90 of one category moves by 5-15 points between back-to-back
validations of one spec, and a held-out model's wall by +-3.5 % within a minute. So
:func:`compare_cpu` times the held-out points once and captures each held-out model once (the
median wall of :data:`~validation.cpu_validation.E2E_CAPTURES` captures, as
:func:`~validation.cpu_validation.validate_cpu` does), then prices them with every spec: the
differences between the columns are the specs' alone. (2026-11-29: re-fits of one calibration's
measurements with and without a strided-copy row term, copy p90 24.9 against 15.1 % on one
timing.) The specs must model the same datasheet and thread count.

``tksim validate --hw A.yaml --hw B.yaml`` runs it; the result is a JSON-able dict
(:data:`SCHEMA`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sim.errors import InputError
from sim.simulator import simulate
from validation.cpu_fit import load_points, predict_points
from validation.cpu_validation import (
    E2E_CAPTURES,
    calibrated_cpu_spec,
    capture_heldout,
    datasheet_spec,
    error_stats,
    heldout_models,
    time_heldout,
)

__all__ = ["SCHEMA", "compare_cpu", "compare_markdown"]

SCHEMA = "tksim.cpu_compare/1"


def compare_cpu(specs: Sequence[str], quick: bool = False, threads: int = 1,
                progress: bool = True, *, seed: int = 0,
                models: Sequence[tuple[str, str, int]] | None = None) -> dict:
    """Held-out kernels and models timed once, priced by each of ``specs`` (module doc).
    ``models`` replaces the held-out models (``()``: kernels only)."""
    start = time.perf_counter()
    loaded = [calibrated_cpu_spec(s, threads) for s in specs]
    if len(loaded) < 2:
        raise InputError("a comparison needs at least two calibrated specs", field="--hw")
    datasheets = {spec.cpu_calibration.datasheet for spec in loaded}
    if len(datasheets) > 1:
        raise InputError(f"the specs refine different datasheets ({', '.join(sorted(datasheets))})"
                         "; compare calibrations of one CPU", field="--hw")
    sheet = datasheet_spec(loaded[0])
    points = load_points(time_heldout(sheet, quick, threads, progress, seed))
    measured = np.array([p.measured_s for p in points])
    kinds = np.array([p.kind for p in points])
    predicted = [predict_points(points, spec) for spec in loaded]
    categories = [{"category": str(c), "count": int((kinds == c).sum()),
                   "specs": [error_stats(pred[kinds == c], measured[kinds == c])
                             for pred in predicted]}
                  for c in sorted(set(kinds))]
    rows = []
    for name, phase, seq in (heldout_models(quick) if models is None else models):
        traces, walls, states = capture_heldout(name, phase, seq, threads, progress,
                                                loaded[0].cpu_calibration.sentinel_s, quick)
        trace, wall = traces[0], float(np.median(walls))
        totals = [simulate(trace, spec).total_s for spec in loaded]
        rows.append({"model": name, "phase": phase, "seq": seq, "measured_s": wall,
                     "measured_walls_s": walls, "machine_states": states,
                     "calibrated_s": totals,
                     "errors": [t / wall - 1 for t in totals]})
    return {"schema": SCHEMA, "specs": [spec.name for spec in loaded],
            "spec_paths": [spec.path for spec in loaded], "threads": threads, "quick": quick,
            "protocol": ("held-out points timed once, each held-out model's wall the median of "
                         f"{E2E_CAPTURES} captures in the first spec's machine state; every "
                         "spec prices the same measurements"),
            "categories": categories, "models": rows,
            "runtime_s": time.perf_counter() - start}


def compare_markdown(results: dict) -> str:
    """Per category median / p90 APE and per model error, one column per spec (named by its
    file where specs share a name, as calibrations of one CPU do)."""
    names = results["specs"]
    if len(set(names)) < len(names):
        names = [Path(p).name if p else n for n, p in zip(names, results["spec_paths"],
                                                          strict=True)]
    if len(set(names)) < len(names):
        names = [f"{n} ({i + 1})" for i, n in enumerate(names)]
    head = "| | " + " | ".join(names) + " |\n|---|" + "---|" * len(names) + "\n"
    lines = [f"| {c['category']} ({c['count']} pts), median / p90 APE | "
             + " | ".join(f"{s['median_ape']:.1%} / {s['p90_ape']:.1%}" for s in c["specs"])
             + " |" for c in results["categories"]]
    lines += [f"| {m['model']} {m['phase']} (s={m['seq']}), error of T | "
              + " | ".join(f"{e:+.1%}" for e in m["errors"]) + " |" for m in results["models"]]
    return head + "\n".join(lines) + "\n"
