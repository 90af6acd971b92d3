"""Several timings of the micro-benchmark suite as one: each point's median over the sessions.

On this shared machine a calibration's kernel times carry its session's state: another tenant
moves memory-bound kernels by 10-20 % between sessions, and the GEMM library's tail with them
(three suites of 2026-11-29, 15:39, 18:39 and 18:51 UTC, each fitted alone and scored on its own
held-out points: gemm p90 23.0, 24.5 and 29.9 %). A point's median over sessions is the time
of a typical state, which is what a prediction for the machine is for. ``python -m
validation.cpu_calibrate --refit A.csv.gz B.csv.gz ...`` fits it (:func:`combine_suites`).

Rows are matched by key. A point's measured, first and rest times are its medians over the
sessions that timed it (an in-situ point exists only where its capture issued that op); every
other column (split, block, copies, reuse distances, ops) is the last session's, so the tables
should come from one version of the suite.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from sim.errors import InputError

__all__ = ["combine_suites", "suite_header", "read_suite"]

#: Columns whose per-session values are combined by their median.
TIME_COLUMNS = ("measured_s", "first_s", "rest_s")


def read_suite(path: str | Path) -> pd.DataFrame:
    """A suite CSV (``validation.microbench.suite``) without its predictions; an unreadable or
    key-less file is an :class:`InputError` naming it."""
    try:
        table = pd.read_csv(path, comment="#")
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read the suite's measurements: {error}",
                         source=str(path)) from None
    if "key" not in table or "measured_s" not in table:
        raise InputError("not a suite table: no key or measured_s column", source=str(path))
    if table["key"].duplicated().any():
        raise InputError(f"duplicate key {table['key'][table['key'].duplicated()].iloc[0]!r}",
                         source=str(path), field="key")
    return table.drop(columns="predicted_s", errors="ignore")


def suite_header(path: str | Path) -> str:
    """The provenance line of a suite CSV (its second ``# `` line), or ''."""
    path = Path(path)
    with gzip.open(path, "rt") if path.suffix == ".gz" else path.open() as f:
        lines = [line[2:].rstrip("\n") for line in f if line.startswith("# ")][:2]
    return lines[1] if len(lines) > 1 else ""


def combine_suites(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """One table: the last of ``tables`` with each point's times the median over the tables
    that have its key (module doc); its ``sessions`` column counts them. One table comes back as
it is."""
    if not tables:
        raise InputError("no suite to combine", field="--refit")
    if len(tables) == 1:  # one table (perhaps itself combined): as it is
        table = tables[0]
        return table if "sessions" in table else table.assign(sessions=1)
    last = tables[-1].set_index("key")
    for column in TIME_COLUMNS:
        if column not in last:
            continue
        per_session = pd.concat([t.set_index("key")[column].rename(i)
                                 for i, t in enumerate(tables) if column in t], axis=1)
        last[column] = per_session.median(axis=1, skipna=True).reindex(last.index)
    counts = pd.concat([t.set_index("key")["measured_s"].notna().rename(i)
                        for i, t in enumerate(tables)], axis=1)
    last["sessions"] = counts.sum(axis=1).reindex(last.index).astype(int)
    return last.reset_index()
