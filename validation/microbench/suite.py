"""Run a micro-benchmark suite: prepare every case, time them interleaved, return a table.

:func:`run_suite` prepares the cases (buffers, recorded ops, rotation; :mod:`.cases`) in chunks
that fit a memory budget, times each chunk with :func:`~.timer.time_interleaved` on ``threads``
torch threads, and returns one row per point (:data:`COLUMNS`), ops serialized as JSON so the
table round-trips through CSV (:func:`points_to_ops`). ``measured_s`` is a call's time averaged
over a sample block, ``first_s`` and ``rest_s`` the block's first (cold) call and the others
apart (:mod:`.timer`; empty for a block of one call). ``table.attrs["sentinel_s"]`` is the
machine's state while the points were timed: the median over the run of the sentinel's time
(:func:`sentinel_time`) after each chunk and at the end (one reading at the end moved with the
state of that moment: 350 us after a suite that had started at 316 us, 2026-11-29).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from sim.hardware import HardwareSpec
from sim.trace import Op, op_from_dict
from validation.microbench.cases import Case, Prepared, prepare
from validation.microbench.timer import TimingPlan, time_interleaved
from workloads.capture_env import torch_threads

__all__ = ["COLUMNS", "run_suite", "points_to_ops", "op_record", "sentinel_time",
           "MEMORY_BUDGET_BYTES"]

COLUMNS = ("key", "family", "category", "dtype", "cold", "shape", "split", "measured_s",
           "first_s", "rest_s", "noise", "num_samples", "dropped", "block", "copies",
           "reuse_bytes", "weight_reuse_bytes", "working_set_bytes", "flops", "ops")
#: Buffers of the points timed together (one chunk) stay below this (bytes).
MEMORY_BUDGET_BYTES = 3 * 2**30


def run_suite(cases: Sequence[Case], spec: HardwareSpec, plan: TimingPlan, *, threads: int = 1,
              seed: int = 0, progress: bool = True, device: str = "cpu",
              passes: int = 1) -> pd.DataFrame:
    """Time ``cases`` on this machine (``spec`` sized to ``threads`` units); one row per point.

    ``passes`` > 1 times the whole suite that many times, each pass with fresh buffers and its
    own order (seed + pass), and keeps per point the median of its passes' medians (noise: the
    median of theirs; samples and drops: the sums), so that one disturbed stretch of the run or
    one unlucky buffer placement does not decide a point.
    ``device="cuda"`` (only where ``torch.cuda.is_available()``) moves the buffers to the GPU
    and times with CUDA events; tksim's calibration runs on the CPU.
    """
    cuda = device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' needs a CUDA build of torch and a GPU")
    rows = []
    bar = tqdm(total=len(cases) * passes, desc="micro-benchmarks", unit="pt", file=sys.stderr,
               disable=not progress)
    with torch_threads(threads), torch.no_grad():
        sentinel = _sentinel(device)
        states: list[float] = []
        for one in range(passes):
            pass_seed = seed + one
            order = np.random.default_rng(pass_seed).permutation(len(cases))
            for chunk in _chunks([cases[i] for i in order], spec, pass_seed, device):
                timings = time_interleaved([p.call for p in chunk], plan, seed=pass_seed,
                                           cuda=cuda, sentinel=sentinel)
                rows += [_row(p, t) for p, t in zip(chunk, timings, strict=True)]
                bar.update(len(chunk))
                chunk.clear()
                states.append(sentinel_time(sentinel))  # on ``threads`` threads, like the points
        bar.close()
        states.append(sentinel_time(sentinel))
    table = _median_of_passes(pd.DataFrame(rows, columns=list(COLUMNS)))
    table.attrs["sentinel_s"] = float(np.median(states))
    return table


def _median_of_passes(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per key: the first pass's row with the passes' median time and noise."""
    grouped = rows.groupby("key", sort=True)
    table = grouped.first()
    table["measured_s"] = grouped["measured_s"].median()
    table["first_s"] = grouped["first_s"].median()  # NaN where no pass timed it apart
    table["rest_s"] = grouped["rest_s"].median()
    table["noise"] = grouped["noise"].median()
    table["num_samples"] = grouped["num_samples"].sum()
    table["dropped"] = grouped["dropped"].sum()
    return table.reset_index()[list(COLUMNS)]


def sentinel_time(sentinel=None, calls: int = 41) -> float:
    """Median seconds of the sentinel (see :func:`_sentinel`): the machine's state, comparable
    between a calibration and a later validation."""
    import statistics
    import time

    run = sentinel or _sentinel("cpu")
    for _ in range(5):
        run()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _sentinel(device: str):
    """A fixed compute + memory workload whose time tracks the other tenant's load: a
    128 x 256 x 256 fp32 GEMM (~17 MFLOP) and a copy of 8 MiB (beyond L2, through L3 / DRAM)."""
    a, b = torch.randn(128, 256, device=device), torch.randn(256, 256, device=device)
    src, dst = torch.randn(2**21, device=device), torch.empty(2**21, device=device)

    def run() -> None:
        torch.mm(a, b)
        dst.copy_(src)

    return run


def _chunks(cases: Sequence[Case], spec: HardwareSpec, seed: int, device: str):
    """Prepared points in groups whose buffers stay within :data:`MEMORY_BUDGET_BYTES`."""
    chunk: list[Prepared] = []
    used = 0.0
    for i, case in enumerate(cases):
        point = prepare(case, spec, seed + i, device=device)
        size = _buffer_bytes(point)
        if chunk and used + size > MEMORY_BUDGET_BYTES:
            yield chunk
            chunk, used = [], 0.0
        chunk.append(point)
        used += size
    if chunk:
        yield chunk


def _buffer_bytes(point: Prepared) -> float:
    seen, total = set(), 0
    for tensors in point.buffers:
        for t in tensors.values():
            if t.data_ptr() not in seen:
                seen.add(t.data_ptr())
                total += t.nbytes
    return total + point.working_set_bytes


def _row(point: Prepared, timing) -> dict:
    case = point.case
    return {
        "key": case.key, "family": case.family, "category": case.category, "dtype": case.dtype,
        "cold": case.cold, "shape": json.dumps(dict(case.shape), sort_keys=True),
        "split": case.split,
        "measured_s": timing.median_s, "first_s": timing.first_median_s,
        "rest_s": timing.rest_median_s, "noise": timing.noise,
        "num_samples": len(timing.samples_s), "dropped": timing.dropped, "block": timing.block,
        "copies": point.copies,
        "reuse_bytes": point.reuse_bytes, "weight_reuse_bytes": point.weight_reuse_bytes,
        "working_set_bytes": point.working_set_bytes,
        "flops": sum(op.flops for op in point.ops),
        "ops": json.dumps([op_record(op) for op in point.ops], sort_keys=True),
    }


def op_record(op: Op) -> dict:
    """An op as a row's ``ops`` JSON keeps it: no ids, dependencies, times or placement."""
    data = op.to_dict()
    for key in ("deps", "measured_s", "measured_host_s", "warm_host_s", "module", "stream",
                "rank"):
        data.pop(key, None)
    return data


def points_to_ops(table: pd.DataFrame) -> list[tuple[Op, ...]]:
    """The ops of each row of a suite table (from its ``ops`` JSON column)."""
    out = []
    for text in table["ops"]:
        ops = []
        for i, data in enumerate(json.loads(text)):
            ops.append(op_from_dict({**data, "id": i, "deps": []}, source="suite", index=i))
        out.append(tuple(ops))
    return out
