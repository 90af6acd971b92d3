"""What the dispatcher op timer costs inside a model's step, against what a capture subtracts.

A capture's host times lose the timer's own cost per top-level event, measured in a loop of
tiny ops (:func:`workloads.op_timer.event_cost`), so that a replay of the trace
(:class:`sim.cost.MeasuredCostModel`) adds up to the step without the timer. Inside a model's
step the timer costs more than in that loop, and the replay of a tiny step comes out high by
the difference. :func:`timer_cost` measures it: blocks of plain steps and of timed steps,
alternated (so both see the same machine), the difference of their medians per top-level
event, beside the loop's cost; :func:`replay_bias` is what the difference does to a replay.
It is a diagnostic, not a correction: a capture that subtracted its own step's difference
would replay to that same plain step by construction.

Measured 2026-11-29 (torch 2.13.0, 1 thread, this project's 2-core machine; two runs of the
command, 17:45 UTC): the loop's cost 0.61-0.63 us per event; in situ 0.90-0.92 us for
llama-tiny decode (135 top-level events in a 486-492 us step: its replay +7.7 to +8.1 %),
0.88-0.99 us for gpt2-tiny prefill (107 in 1.40 ms: +2.0 to +2.9 %), 0.93-0.95 us for
llama-tiny prefill (151 in 1.25 ms: +3.8 to +4.1 %). With a callback registered that did
nothing, RecordFunction alone cost 126-174 ns per event of the step (nested ones included)
against 65 ns in the loop: the dispatcher's observer path runs cold between a model's ops.
Cheaper variants of the callback (switching nested observation off only for events that have
nested ones: 0.33 us per event in the loop) cost as much in situ (0.75-0.82 us).

``python -m validation.op_timer_cost [MODEL:PHASE ...] [--rounds N] [--steps N]`` prints it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sim.errors import InputError, exit_on_input_error

__all__ = ["TimerCost", "timer_cost", "replay_bias", "DEFAULT_MODELS", "main"]

#: The held-out tiny steps of the CPU validation whose replays the timer's cost moves most.
DEFAULT_MODELS = ("llama-tiny:decode", "gpt2-tiny:prefill", "llama-tiny:prefill")
_WARMUP = 10


@dataclass(frozen=True)
class TimerCost:
    """Seconds per top-level event: in a loop of tiny ops and inside the step; the step's
    plain median wall and its top-level events."""

    loop_s: float
    in_situ_s: float
    plain_wall_s: float
    events: int


def replay_bias(cost: TimerCost) -> float:
    """The replay's relative excess over the plain step from the timer's cost in situ beyond
    what the capture subtracts (the loop's)."""
    return cost.events * (cost.in_situ_s - cost.loop_s) / cost.plain_wall_s


def timer_cost(run: Callable[[], object], module, *, rounds: int = 4,
               steps: int = 15) -> TimerCost:
    """:class:`TimerCost` of ``run`` (one step; already warm): ``rounds`` of a block of
    ``steps`` plain steps and one of ``steps`` timed steps, in alternating order."""
    from workloads.op_timer import event_cost, top_events

    plain: list[float] = []
    timed: list[float] = []
    events = 0
    for r in range(rounds):
        for kind in (("plain", "timed") if r % 2 == 0 else ("timed", "plain")):
            for _ in range(steps):
                if kind == "plain":
                    start = time.perf_counter()
                    run()
                    plain.append(time.perf_counter() - start)
                    continue
                with top_events(module) as found:
                    start = time.perf_counter()
                    run()
                    timed.append(time.perf_counter() - start)
                events = len(found)
    wall = statistics.median(plain)
    extra = statistics.median(timed) - wall
    return TimerCost(event_cost(module), extra / max(events, 1), wall, events)


def _model_step(spec: str) -> Callable[[], object]:
    """A warm step of built-in model ``MODEL:PHASE`` (seq 64, batch 1, fp32, random weights)."""
    from workloads.capture import step_program
    from workloads.models import build_model
    from workloads.request import make_request

    name, _, phase = spec.partition(":")
    request = make_request(name, hf_config=None, phase=phase or "prefill", batch=1, seq=64,
                           context=None, dtype="fp32", mode="real", threads=1, warmup=1,
                           repeat=1, seed=0, layers=None, moe_skew=None)
    program = step_program(request, build_model(request.config, dtype="fp32", seed=0))
    program.prepare()
    for _ in range(_WARMUP):
        program.run(None)
    return lambda: program.run(None)


def main(argv: Sequence[str] | None = None) -> None:
    """Print the timer's cost per event in a loop and in each model's step; bad input: one
    line on stderr, exit status 2."""
    exit_on_input_error(lambda: _main(argv))


def _main(argv: Sequence[str] | None) -> None:
    from workloads.capture_env import torch_threads
    from workloads.hf_static import static_hf_checks
    from workloads.op_timer import timer_module, timer_unavailable

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=list(DEFAULT_MODELS),
                        help="MODEL:PHASE, e.g. llama-tiny:decode")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=15)
    args = parser.parse_args(argv)
    for flag, value in (("--rounds", args.rounds), ("--steps", args.steps)):
        if not 1 <= value <= 1000:
            raise InputError(f"must be between 1 and 1000, got {value}", field=flag)
    module = timer_module()
    if module is None:
        raise InputError(f"the dispatcher timer could not be built: {timer_unavailable()}",
                         field="op timer")
    print("model            events  plain step   loop    in situ  replay bias")
    with torch_threads(1), static_hf_checks():
        for spec in args.models:
            cost = timer_cost(_model_step(spec), module, rounds=args.rounds, steps=args.steps)
            print(f"{spec:16s} {cost.events:6d} {cost.plain_wall_s * 1e6:8.0f} us "
                  f"{cost.loop_s * 1e9:5.0f} ns {cost.in_situ_s * 1e9:6.0f} ns  "
                  f"{replay_bias(cost):+6.1%}", flush=True)


if __name__ == "__main__":
    main()
