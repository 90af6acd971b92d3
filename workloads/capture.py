"""Capture a trace from a real PyTorch run on this machine's CPU.

:func:`capture_module` runs any ``nn.Module`` forward under ``torch.no_grad()``: ``warmup``
un-recorded forwards, then ``repeat`` recorded ones (``workloads.recorder.OpRecorder`` with
``workloads.module_path.ModulePath``). Each op's ``measured_s`` is its median over the recorded
forwards, which must issue the same ops. :func:`capture_model` does this for a built-in model's
prefill (one forward over b x s random token ids).

Timing: torch runs on ``threads`` intra-op threads (restored afterwards); on shared cores, keep it
at 1 and use ``repeat`` > 1. ``meta["measured_wall_s"]`` is the wall time of a recorded forward,
recorder overhead included; ``meta["unrecorded_wall_s"]`` that of the fastest warm-up forward.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from sim.errors import InputError
from sim.trace import PHASES, Op, Trace
from workloads.models import TORCH_DTYPES_BY_NAME, build_model, max_positions, model_config
from workloads.module_path import ModulePath
from workloads.recorder import OpRecorder

__all__ = ["capture_model", "capture_module", "MAX_BATCH", "MAX_REAL_TOKENS"]

#: Largest batch accepted: beyond it a request is a typo, not a workload.
MAX_BATCH = 4096
#: Largest b*s of a real capture: the forward materializes b*s*V logits in this machine's memory
#: (GPT-2: 16384 tokens x 50257 x 4 B = 3.3 GB). Larger runs are for fake-tensor capture.
MAX_REAL_TOKENS = 16384
_MAX_REPEATS = 1000


def capture_model(name: str, *, batch: int = 1, seq: int = 64, dtype: str = "fp32",
                  threads: int = 1, warmup: int = 1, seed: int = 0, repeat: int = 1) -> Trace:
    """Trace the prefill forward of built-in model ``name`` over ``batch`` x ``seq`` tokens.

    Weights and token ids are random, drawn from ``seed``. Raises :class:`InputError` for an
    unknown model, a bad batch / seq / dtype / threads / warmup / seed / repeat.
    """
    config = model_config(name)
    _check_int("--batch", batch, 1, MAX_BATCH)
    _check_int("--seq", seq, 1, max_positions(config) or MAX_REAL_TOKENS,
               why="the model's maximum positions")
    if batch * seq > MAX_REAL_TOKENS:
        raise InputError(f"batch x seq = {batch * seq} tokens is more than a real capture on this "
                         f"CPU allows ({MAX_REAL_TOKENS})", field="--batch")
    if dtype not in TORCH_DTYPES_BY_NAME:
        raise InputError(f"unsupported dtype {dtype!r}; one of {', '.join(TORCH_DTYPES_BY_NAME)}",
                         field="--dtype")
    _check_int("--seed", seed, 0, 2**63 - 1)
    model = build_model(config, dtype=dtype, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, config.vocab_size, (batch, seq), generator=generator)  # (b, s)
    meta = {"model": name, "phase": "prefill", "batch": batch, "seq": seq, "dtype": dtype,
            "seed": seed}
    return capture_module(model, (input_ids,), name=name, threads=threads, warmup=warmup,
                          repeat=repeat, meta=meta)


def capture_module(module: nn.Module, example_inputs: Any, *, name: str = "custom",
                   threads: int = 1, warmup: int = 1, repeat: int = 1, phase: str = "forward",
                   meta: Mapping[str, Any] | None = None) -> Trace:
    """Trace ``module(*example_inputs)`` (a tuple / list of arguments, a dict of keyword
    arguments, or one tensor) under ``torch.no_grad()``; ``meta`` is merged into the trace's meta.
    """
    args, kwargs = _as_call(example_inputs)
    _check_int("--threads", threads, 1, os.cpu_count() or 1, why="this machine's CPU count")
    _check_int("--warmup", warmup, 0, _MAX_REPEATS)
    _check_int("--repeat", repeat, 1, _MAX_REPEATS)
    if phase not in PHASES:
        raise InputError(f"unknown phase {phase!r}; one of {', '.join(PHASES)}", field="phase")
    with _torch_threads(threads), torch.no_grad():
        unrecorded_s = [_forward_s(module, args, kwargs) for _ in range(warmup)]
        runs = [_record(module, args, kwargs, phase) for _ in range(repeat)]
    ops = _median_times([ops for ops, _ in runs])
    measured = [op.measured_s for op in ops]
    real = all(m is not None for m in measured)
    return Trace(ops=tuple(ops), meta={
        "model": name,
        "phase": phase,
        "mode": "real" if real else "fake",
        "captured_on": _host_description(),
        "torch_version": torch.__version__,
        "threads": threads,
        "warmup": warmup,
        "repeat": repeat,
        "measured_wall_s": statistics.median(wall_s for _, wall_s in runs),
        "sum_measured_s": sum(measured) if real else None,
        "unrecorded_wall_s": min(unrecorded_s) if unrecorded_s else None,
        **(meta or {}),
    })


def _record(module: nn.Module, args: Sequence, kwargs: Mapping, phase: str) -> tuple[list[Op],
                                                                                       float]:
    """One recorded forward: its ops and its wall time in seconds (recorder overhead included)."""
    with ModulePath(module) as paths, OpRecorder(module_path=lambda: paths.current,
                                                 phase=phase) as recorder:
        start = time.perf_counter()
        module(*args, **kwargs)
        wall_s = time.perf_counter() - start
    return recorder.ops, wall_s


def _forward_s(module: nn.Module, args: Sequence, kwargs: Mapping) -> float:
    start = time.perf_counter()
    module(*args, **kwargs)
    return time.perf_counter() - start


def _median_times(runs: list[list[Op]]) -> list[Op]:
    """The first run's ops, each with its median ``measured_s`` over all runs."""
    first = runs[0]
    for ops in runs[1:]:
        if [_structure(op) for op in ops] != [_structure(op) for op in first]:
            raise RuntimeError("the recorded forwards issued different ops: the module is not "
                               "deterministic, capture with repeat=1")
    if len(runs) == 1 or any(op.measured_s is None for op in first):
        return first
    return [replace(op, measured_s=statistics.median(ops[op.id].measured_s for ops in runs))
            for op in first]


def _structure(op: Op) -> tuple:
    return op.name, op.inputs, op.outputs, op.deps, op.module


def _as_call(example_inputs: Any) -> tuple[tuple, dict]:
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,), {}
    if isinstance(example_inputs, Mapping):
        return (), dict(example_inputs)
    if isinstance(example_inputs, Sequence) and not isinstance(example_inputs, str):
        return tuple(example_inputs), {}
    raise InputError("example inputs must be a tensor, a sequence of arguments or a mapping of "
                     f"keyword arguments, got {type(example_inputs).__name__}")


def _check_int(flag: str, value: object, low: int, high: int, *, why: str = "") -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InputError(f"must be an integer, got {value!r}", field=flag)
    if not low <= value <= high:
        limit = f" ({why})" if why else ""
        raise InputError(f"must be between {low} and {high}{limit}, got {value}", field=flag)


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _host_description() -> str:
    """CPU model, architecture, logical CPU count and OS, e.g. for ``meta["captured_on"]``."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle
                     if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return (f"{cpu} ({platform.machine()}, {os.cpu_count()} logical CPUs, "
            f"{platform.system()} {platform.release()})")
