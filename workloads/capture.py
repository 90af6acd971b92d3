"""Capture a trace of a PyTorch program: a built-in / HF-config model or any ``nn.Module``.

:func:`capture_model` validates a request (``workloads.request``), refuses a real run that would
not fit in memory (``workloads.memory``), builds the model (in a fake mode for ``mode="fake"``,
``workloads.fake``; MoE routing made static, ``workloads.moe``), and records one step of a phase
(``workloads.phases``: prefill, decode, train). :func:`capture_module` records a forward or a
training step of any module (built in ``workloads.fake.fake_mode()`` for a fake capture).

Recording: ``warmup`` un-recorded steps, then ``repeat`` recorded ones, each under a
``workloads.recorder.OpRecorder`` on top of the tensor mode, with
``workloads.module_path.ModulePath`` for module paths. Fake captures are not timed: one recorded
step, no warm-up.

Op times (``measured_s``): with ``op_timer="auto"`` (the default) and a C++ toolchain, each op's
median over ``repeat`` more steps timed from inside the dispatcher, between the warm-up and the
recorded steps (``workloads.op_timer``: one step to line its events up with the recorded ops,
:data:`SETTLE_STEPS` plain ones, then the timed ones, without the recorder). ``meta["op_timer"]``
says ``"dispatcher"``, and each op also gets ``measured_host_s``, the host time before it in
those steps, less the timer's own cost per event measured in a loop (0.6-0.7 us here; in a model
step it costs a little more, see ``docs/cpu-validation.md``). Otherwise (``op_timer="python"``,
no compiler, or steps that do not line up) the recorder's own times, its median over the
recorded steps, which pay several us of Python per op: ``"python"``, with
``meta["op_timer_note"]`` saying why.

Host profile (``host_profile=True``): after the capture, a real capture of the model's shrunken
twin (:mod:`workloads.host_twin`; tiny, even for a fake capture) gives each op its
``warm_host_s``; ``meta["host_profile"]`` says ``"twin"``, or None with
``meta["host_profile_note"]`` saying why not.

Timing: torch runs on ``threads`` intra-op threads (restored afterwards); on shared cores, keep it
at 1 and use ``repeat`` > 1. ``meta["measured_wall_s"]`` is the wall time of a recorded step,
recorder overhead included; ``meta["unrecorded_wall_s"]`` that of the fastest warm-up step;
``meta["timed_wall_s"]`` the median of the dispatcher-timed steps (the timer's cost included).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sim.errors import InputError
from sim.trace import Op, Trace
from workloads.capture_env import host_description, torch_threads
from workloads.fake import entered, fake_mode, fake_mode_of
from workloads.hf_static import static_hf_checks
from workloads.host_calls import HostCalls
from workloads.host_twin import twin_config, warm_host_times
from workloads.memory import check_fits, estimate_bytes
from workloads.models import TORCH_DTYPES_BY_NAME, build_model, is_encoder, num_experts
from workloads.module_path import ModulePath
from workloads.moe import apply_static_routing
from workloads.op_timer import (
    Event,
    TimedStep,
    event_cost,
    now_ns,
    op_times,
    timer_module,
    timer_unavailable,
    top_events,
    tree_events,
)
from workloads.phases import Decode, Forward, Program, Train, token_ids
from workloads.progress import Stages
from workloads.recorder import OpRecorder
from workloads.request import (
    MAX_BATCH,
    MAX_REAL_TOKENS,
    MAX_REPEATS,
    CaptureRequest,
    check_int,
    make_request,
)

__all__ = ["capture_model", "capture_module", "step_program", "MAX_BATCH", "MAX_REAL_TOKENS",
           "OP_TIMERS"]

#: Phases of ``capture_module``: a forward without autograd, or a training step.
MODULE_PHASES = ("forward", "train")
#: Plain steps between the dispatcher's tree step and its timed steps: the first steps after other
#: work run slow (llama-tiny decode, 2026-11-29: 2103 us tree step, then 1069, 864, 724 us timed
#: steps after 531-627 us warm-ups).
SETTLE_STEPS = 3
#: How a real capture times its ops (module doc).
OP_TIMERS = ("auto", "python")


def capture_model(name: str | None = None, *, hf_config: str | Path | None = None,
                  phase: str = "prefill", batch: int = 1, seq: int = 64,
                  context: int | None = None, dtype: str = "fp32", mode: str = "real",
                  threads: int = 1, warmup: int = 1, repeat: int = 1, seed: int = 0,
                  layers: int | None = None, moe_skew: float | None = None,
                  op_timer: str = "auto", host_profile: bool = False,
                  progress: bool = False) -> Trace:
    """Trace one step of ``phase`` of built-in model ``name`` or of the HF ``config.json`` at
    ``hf_config``, with random weights and token ids drawn from ``seed``.

    prefill: a forward over ``batch`` x ``seq`` tokens; decode: one new token per sequence after
    ``context`` tokens (default ``seq``) in the KV cache; train: forward with labels, backward,
    AdamW step. ``mode="fake"`` captures any size without allocating it (no ``measured_s``);
    ``layers`` overrides the number of layers; ``moe_skew`` the MoE routing assumption (Zipf
    exponent, 0 = balanced, the default); ``op_timer`` how ops are timed (module doc);
    ``host_profile`` also times a shrunken twin of the model, real and tiny even for a fake
    capture, for each op's ``warm_host_s`` (:mod:`workloads.host_twin`). Bad input:
    :class:`InputError` naming the flag.
    """
    _check_op_timer(op_timer)
    request = make_request(name, hf_config=hf_config, phase=phase, batch=batch, seq=seq,
                           context=context, dtype=dtype, mode=mode, threads=threads,
                           warmup=warmup, repeat=repeat, seed=seed, layers=layers,
                           moe_skew=moe_skew)
    if request.mode == "real":
        _check_memory(request)
    fake = fake_mode() if request.mode == "fake" else None
    warmup, repeat = (0, 1) if fake is not None else (request.warmup, request.repeat)
    timer = op_timer if fake is None else None
    stages = Stages(total=2 + warmup + repeat + (timer == "auto") + host_profile,
                    desc=f"capture {request.name} {request.phase}", enabled=progress)
    try:
        with entered(fake):
            with stages.stage("build"):
                model = build_model(request.config, dtype=request.dtype, seed=request.seed)
                if request.routing is not None:
                    apply_static_routing(model, request.routing)
            program = step_program(request, model)
            ops, timing = _capture(program, threads=request.threads, warmup=warmup,
                                   repeat=repeat, stages=stages, op_timer=timer)
        if host_profile:  # real, outside a fake capture's mode
            with stages.stage("host profile (twin)"):
                ops, profile = _host_profile(request, ops)
            timing.update(profile)
    finally:
        stages.close()
    meta = {**_request_meta(request, model), **program.meta(), "warmup": warmup,
            "repeat": repeat}
    return _trace(ops, timing, name=request.name, mode=request.mode, threads=request.threads,
                  meta=meta)


def capture_module(module: nn.Module, example_inputs: Any, *, name: str = "custom",
                   threads: int = 1, warmup: int = 1, repeat: int = 1, phase: str = "forward",
                   meta: Mapping[str, Any] | None = None,
                   loss_fn: Callable[[Any], torch.Tensor] | None = None,
                   op_timer: str = "auto", progress: bool = False) -> Trace:
    """Trace ``module(*example_inputs)`` (a tuple / list of arguments, a dict of keyword
    arguments, or one tensor): ``phase="forward"`` under ``torch.no_grad()``, or ``"train"``:
    forward, ``loss_fn(output)`` (default: the output itself if a scalar, else its ``.loss``),
    backward, AdamW step. A module built in ``workloads.fake.fake_mode()`` is captured fake.
    ``meta`` is merged into the trace's meta; ``op_timer`` as in :func:`capture_model`.
    """
    _check_op_timer(op_timer)
    args, kwargs = _as_call(example_inputs)
    check_int("--threads", threads, 1, os.cpu_count() or 1, why="this machine's CPU count")
    check_int("--warmup", warmup, 0, MAX_REPEATS)
    check_int("--repeat", repeat, 1, MAX_REPEATS)
    if phase not in MODULE_PHASES:
        raise InputError(f"unknown phase {phase!r}; one of {', '.join(MODULE_PHASES)}",
                         field="phase")
    fake = fake_mode_of(module, (args, kwargs))
    warmup, repeat = (0, 1) if fake is not None else (warmup, repeat)
    timer = op_timer if fake is None else None
    program = (Train(module, lambda: (args, kwargs), loss_fn or _default_loss)
               if phase == "train" else Forward(module, lambda: (args, kwargs)))
    stages = Stages(total=1 + warmup + repeat + (timer == "auto"), desc=f"capture {name}",
                    enabled=progress)
    try:
        with entered(fake):
            ops, timing = _capture(program, threads=threads, warmup=warmup, repeat=repeat,
                                   stages=stages, op_timer=timer)
    finally:
        stages.close()
    all_meta = {"phase": phase, **program.meta(), "warmup": warmup, "repeat": repeat,
                **(meta or {})}
    return _trace(ops, timing, name=name, mode="fake" if fake else "real", threads=threads,
                  meta=all_meta)


#: Warm-up and timed steps of a host profile's twin (a few ms each).
TWIN_WARMUP, TWIN_REPEAT = 5, 5


def _host_profile(request: CaptureRequest,
                  ops: list[Op]) -> tuple[list[Op], dict[str, Any]]:
    """``ops`` with their ``warm_host_s`` from a real capture of the request's twin
    (:mod:`workloads.host_twin`), and the meta saying so; or unchanged, with a note why not."""
    config = twin_config(request.config)
    if isinstance(config, str):
        return ops, {"host_profile": None, "host_profile_note": config}
    twin = replace(request, config=config, mode="real")
    model = build_model(config, dtype=request.dtype, seed=request.seed)
    if twin.routing is not None:
        apply_static_routing(model, twin.routing)
    quiet = Stages(total=0, desc="", enabled=False)
    try:
        twin_ops, timing = _capture(step_program(twin, model), threads=request.threads,
                                    warmup=TWIN_WARMUP, repeat=TWIN_REPEAT, stages=quiet,
                                    op_timer="auto")
    finally:
        quiet.close()
    warm = warm_host_times(ops, twin_ops)
    if isinstance(warm, str):
        return ops, {"host_profile": None, "host_profile_note": warm}
    return [replace(op, warm_host_s=w) for op, w in zip(ops, warm, strict=True)], {
        "host_profile": "twin", "twin_host_s": timing["measured_host_s"],
        "twin_wall_s": timing["timed_wall_s"]}


def step_program(request: CaptureRequest, model: nn.Module) -> Program:
    """The step of ``request.phase`` for an HF model (inputs made inside the tensor mode)."""
    vocab, b, s, seed = request.config.vocab_size, request.batch, request.seq, request.seed
    decoder = {} if is_encoder(request.config) else {"use_cache": request.phase == "prefill"}
    if request.phase == "decode":
        return Decode(model, batch=b, context=request.context, seed=seed)

    def inputs() -> tuple[tuple, dict]:
        ids = token_ids(vocab, b, s, seed)  # (b, s)
        if request.phase == "train":
            return (), {"input_ids": ids, "labels": ids, **decoder}
        return (ids,), decoder

    if request.phase == "train":
        return Train(model, inputs, lambda output: output.loss)
    return Forward(model, inputs)


def _capture(program: Program, *, threads: int, warmup: int, repeat: int, stages: Stages,
             op_timer: str | None) -> tuple[list[Op], dict[str, Any]]:
    """prepare, ``warmup`` un-recorded steps, (``op_timer="auto"``) the dispatcher-timed steps,
    ``repeat`` recorded ones: ops and how they were timed (module doc). The timed steps come
    before the recorded ones: plain steps right after recorded ones ran 1.3-1.8x slower than
    before them (llama-tiny decode, 2026-11-29)."""
    with torch_threads(threads), static_hf_checks():
        with stages.stage("prepare"):
            program.prepare()
        unrecorded_s = []
        for i in range(warmup):
            with stages.stage(f"warm-up {i + 1}/{warmup}"):
                start = time.perf_counter()
                program.run(None)
                unrecorded_s.append(time.perf_counter() - start)
        dispatcher = _dispatcher_steps(program, repeat, stages, op_timer)
        runs = []
        for i in range(repeat):
            with stages.stage(f"record {i + 1}/{repeat}"):
                runs.append(_record(program, stages))
    ops = _median_times([ops for ops, _ in runs])
    timing: dict[str, Any] = {
        "measured_wall_s": statistics.median(wall_s for _, wall_s in runs),
        "unrecorded_wall_s": min(unrecorded_s) if unrecorded_s else None,
    }
    if op_timer is not None:
        ops, timed = _timed_ops(ops, dispatcher)
        timing.update(timed)
    return ops, timing


@dataclass(frozen=True)
class _DispatcherRun:
    """The dispatcher timer's steps: one tree step, the timed ones, the timer's cost per event."""

    tree: list[Event]
    steps: list[TimedStep]
    event_s: float


def _dispatcher_steps(program: Program, steps: int, stages: Stages,
                      op_timer: str | None) -> _DispatcherRun | str | None:
    """Run the tree step and ``steps`` timed steps (``workloads.op_timer``); or why not: a note
    (``op_timer="python"``, no toolchain); None without timing (a fake capture)."""
    if op_timer is None:
        return None
    module = timer_module() if op_timer == "auto" else None
    if module is None:
        if op_timer != "auto":
            return "asked for (op_timer='python')"
        return timer_unavailable() or "the dispatcher timer could not be built"
    with stages.stage(f"time ops ({steps} steps)"):
        with tree_events(module) as tree:
            program.run(None)
        for _ in range(SETTLE_STEPS):
            program.run(None)
        timed = []
        for _ in range(steps):
            with top_events(module) as events:
                start = now_ns(module)
                program.run(None)
                end = now_ns(module)
            timed.append(TimedStep(events, start, end))
        event_s = event_cost(module)
    return _DispatcherRun(tree, timed, event_s)


def _timed_ops(ops: list[Op], run: _DispatcherRun | str) -> tuple[list[Op], dict[str, Any]]:
    """The ops with their dispatcher-timed ``measured_s`` and ``measured_host_s`` (the host time
    before each) when the timer ran and its steps line up with the recorded ops; else as
    recorded. The meta gets the host time after the last op (``measured_host_after_s``) and in
    all (``measured_host_s``)."""
    if isinstance(run, str):
        return ops, {"op_timer": "python", "op_timer_note": run}
    timing = op_times(run.tree, run.steps, [op.name for op in ops],
                      [op.category == "view" for op in ops], run.event_s)
    if timing is None:
        return ops, {"op_timer": "python", "op_timer_note": "the dispatcher's events did not "
                     "line up with the recorded ops"}
    timed_ops = [replace(op, measured_s=t, measured_host_s=host)
                 for op, t, host in zip(ops, timing.op_s, timing.host_s, strict=True)]
    return timed_ops, {
        "op_timer": "dispatcher", "op_timer_event_s": run.event_s,
        "timed_wall_s": statistics.median((s.end_ns - s.start_ns) * 1e-9 for s in run.steps),
        "measured_host_s": sum(timing.host_s) + timing.after_s,
        "measured_host_after_s": timing.after_s,
        "recorder_sum_s": sum(op.measured_s for op in ops)}


def _record(program: Program, stages: Stages) -> tuple[list[Op], float]:
    """One recorded step: its ops and its wall time in seconds (recorder overhead included)."""
    with ModulePath(program.root, label_autograd=program.trains) as paths, \
            HostCalls() as calls, \
            OpRecorder(module_path=lambda: paths.current, on_op=stages.ops,
                       host_calls=calls) as recorder:
        start = time.perf_counter()
        program.run(recorder)
        wall_s = time.perf_counter() - start
    return recorder.ops, wall_s


def _median_times(runs: list[list[Op]]) -> list[Op]:
    """The first run's ops, each with its median ``measured_s`` over all runs."""
    first = runs[0]
    for ops in runs[1:]:
        if [_structure(op) for op in ops] != [_structure(op) for op in first]:
            raise RuntimeError("the recorded steps issued different ops: the program is not "
                               "deterministic, capture with repeat=1")
    if len(runs) == 1 or any(op.measured_s is None for op in first):
        return first
    return [replace(op, measured_s=statistics.median(ops[op.id].measured_s for ops in runs))
            for op in first]


def _check_op_timer(op_timer: str) -> None:
    if op_timer not in OP_TIMERS:
        raise InputError(f"unknown op timer {op_timer!r}; one of {', '.join(OP_TIMERS)}",
                         field="--op-timer")


def _structure(op: Op) -> tuple:
    return op.name, op.inputs, op.outputs, op.deps, op.module


def _trace(ops: list[Op], timing: Mapping[str, Any], *, name: str, mode: str,
           threads: int, meta: Mapping[str, Any]) -> Trace:
    real = mode == "real"
    measured = [op.measured_s for op in ops]
    return Trace(ops=tuple(ops), meta={
        "model": name,
        "mode": mode,
        "captured_on": host_description(),
        "torch_version": torch.__version__,
        "threads": threads,
        "measured_wall_s": timing["measured_wall_s"] if real else None,
        "sum_measured_s": sum(m for m in measured if m is not None) if real else None,
        "unrecorded_wall_s": timing["unrecorded_wall_s"],
        **{k: v for k, v in timing.items() if k not in ("measured_wall_s", "unrecorded_wall_s")},
        **meta,
    })


def _request_meta(request: CaptureRequest, model: nn.Module) -> dict[str, Any]:
    config = request.config
    decode = request.phase == "decode"
    tokens = request.batch * (1 if decode else request.seq)
    meta = {
        "phase": request.phase, "batch": request.batch, "seq": 1 if decode else request.seq,
        "context": request.context, "tokens": tokens, "dtype": request.dtype,
        "seed": request.seed, "layers": request.layers,
        "num_layers": config.num_hidden_layers, "model_type": config.model_type,
        "params": sum(p.numel() for p in model.parameters()), "hf_config": request.hf_config,
    }
    if request.routing is not None:
        top_k = int(getattr(config, "num_experts_per_tok", 1))
        meta["moe"] = request.routing.describe(tokens, top_k, num_experts(config))
    return meta


def _check_memory(request: CaptureRequest) -> None:
    """Refuse a real capture whose estimated peak memory exceeds what this machine has."""
    with torch.device("meta"):
        num_params = sum(p.numel() for p in build_model(request.config).parameters())
    dtype_bytes = torch.empty((), dtype=TORCH_DTYPES_BY_NAME[request.dtype]).element_size()
    parts = estimate_bytes(request.config, phase=request.phase, batch=request.batch,
                           seq=request.seq, context=request.context or 0,
                           dtype_bytes=dtype_bytes, num_params=num_params)
    check_fits(parts, what=f"{request.phase} of {request.name}")


def _default_loss(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    loss = getattr(output, "loss", None)
    if loss is None:
        raise InputError("the module's output is neither a scalar loss nor has a .loss; pass "
                         "loss_fn=", field="loss_fn")
    return loss


def _as_call(example_inputs: Any) -> tuple[tuple, dict]:
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,), {}
    if isinstance(example_inputs, Mapping):
        return (), dict(example_inputs)
    if isinstance(example_inputs, list | tuple):
        return tuple(example_inputs), {}
    raise InputError("example inputs must be a tensor, a sequence of arguments or a mapping of "
                     f"keyword arguments, got {type(example_inputs).__name__}")
