"""Time a real step's aten ops from inside PyTorch's dispatcher, for a recorded trace's ops.

Why: :class:`workloads.recorder.OpRecorder` times each op around its call from Python, inside a
``TorchDispatchMode``. On this project's 2-core machine (2026-11-29, torch 2.13.0, 1 thread) that
adds several microseconds to every op -- more than most ops of a small model take -- so a step's
op times said nothing precise about its wall. This timer is a global C++ ``RecordFunction``
callback (compiled once with ``torch.utils.cpp_extension.load_inline``; needs a C++ compiler and
ninja) that stamps each top-level op's start and end with ``steady_clock``:

- a *tree* step records every op event with its nesting depth, so the recorder's ops can be found
  in it (:func:`align`);
- *timed* steps record only top-level events and switch ``RecordFunction`` off inside them, so an
  op's nested calls pay no observer cost: measured, a ``linear`` of 1 x 64 x 64 took 1.2 us by
  this timer inside a 2.3 us Python call (1.7 us without the timer; the recorder's Python timer
  gives several us), and an ``add`` of 16 floats 0.5 us.

:func:`op_times` maps the timed steps onto the recorder's ops: the recorder sees ops after
composite ops decomposed (``linear`` -> ``t`` + ``addmm``), the dispatcher's events nest them. A
top-level event holding one recorded op gives that op its duration; one holding several (a
composite) is split between them in proportion to their durations in the tree step. Time spent
in top-level events that hold no recorded op (metadata queries) and between events is host time,
not op time. The result is None when the steps do not line up (an op the dispatcher does not
observe, a step that issued different ops): the caller keeps the recorder's own times.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import cache

__all__ = ["Event", "TimedStep", "OpTiming", "timer_module", "timer_unavailable", "now_ns",
           "tree_events", "top_events", "align", "op_times", "event_cost"]

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/record_function.h>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

namespace {
// The name is copied into the event (an autograd node's event name dies with the event), into a
// fixed buffer: a std::string cost 0.2 us more per event. Longer names are cut, and an op whose
// name is cut does not line up with the recorder's: the capture keeps the recorder's times.
constexpr size_t kNameBytes = 80;
struct Event { char name[kNameBytes]; int64_t start; int64_t end; int64_t depth; };
std::vector<Event> events;
std::vector<size_t> open;
at::CallbackHandle handle = 0;
bool top_only = false;
std::thread::id owner;

int64_t now() { return std::chrono::steady_clock::now().time_since_epoch().count(); }

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  if (std::this_thread::get_id() != owner) return nullptr;
  if (top_only) at::enableRecordFunction(false);  // nested ops: no observer cost
  open.push_back(events.size());
  events.emplace_back();
  Event& event = events.back();
  std::strncpy(event.name, fn.name(), kNameBytes - 1);
  event.name[kNameBytes - 1] = '\0';
  event.depth = static_cast<int64_t>(open.size()) - 1;
  event.start = now();
  return nullptr;
}

void on_end(const at::RecordFunction&, at::ObserverContext*) {
  int64_t end = now();
  if (std::this_thread::get_id() != owner || open.empty()) return;
  events[open.back()].end = end;
  open.pop_back();
  if (top_only) at::enableRecordFunction(true);
}
}  // namespace

void start(bool top) {
  events.clear();
  open.clear();
  events.reserve(1 << 16);
  top_only = top;
  owner = std::this_thread::get_id();
  handle = at::addGlobalCallback(
      at::RecordFunctionCallback(on_start, on_end).scopes({at::RecordScope::FUNCTION}));
}

int64_t clock_ns() { return now(); }

std::vector<std::tuple<std::string, int64_t, int64_t, int64_t>> stop() {
  at::removeCallback(handle);
  std::vector<std::tuple<std::string, int64_t, int64_t, int64_t>> out;
  out.reserve(events.size());
  for (const auto& e : events) out.emplace_back(std::string(e.name), e.start, e.end, e.depth);
  events.clear();
  return out;
}
"""


@dataclass(frozen=True)
class Event:
    """One dispatcher event: op name, start and end (ns, steady clock), nesting depth (0 = top)."""

    name: str
    start_ns: int
    end_ns: int
    depth: int

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) * 1e-9


#: Event name -> the name the recorder sees for the same call. Under a dispatch mode, ATen treats
#: every tensor as a subclass: ``reshape`` of a tensor whose strides allow it issues ``view``
#: where a plain run issues ``_reshape_alias``, and autograd sums gradients out of place
#: (``add``) where a plain run adds in place (``add_``).
_EQUIVALENT = {"aten::_reshape_alias": "aten::view", "aten::add_": "aten::add"}

#: How many top-level events ahead an op is looked for (:func:`align`).
WINDOW = 8

_unavailable: list[str] = []


@cache
def timer_module():
    """The compiled timer extension, or None when it cannot be built here (the reason:
    :func:`timer_unavailable`). Built once per torch version and source, then cached on disk."""
    try:
        from torch.utils.cpp_extension import load_inline

        # pip's ninja lands beside the interpreter, which need not be on PATH
        bin_dir = os.path.dirname(sys.executable)
        if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
        return load_inline("tksim_op_timer", cpp_sources=_SOURCE,
                           functions=["start", "stop", "clock_ns"], verbose=False)
    except Exception as error:  # no compiler, no ninja, a failed build: keep the Python timer
        _unavailable.append(f"{type(error).__name__}: {str(error).splitlines()[0][:200]}")
        return None


def timer_unavailable() -> str | None:
    """Why the C++ timer could not be built (None: it was, or was not tried)."""
    return _unavailable[-1] if _unavailable else None


def now_ns(module) -> int:
    """The timer's clock now, in ns (``steady_clock``, the events' clock)."""
    return module.clock_ns()


@contextmanager
def _recording(module, top: bool) -> Iterator[list[Event]]:
    events: list[Event] = []
    module.start(top)
    try:
        yield events
    finally:
        events.extend(Event(*e) for e in module.stop())


def tree_events(module) -> AbstractContextManager[list[Event]]:
    """``with tree_events(m) as events:`` every op event of the block, nested ones included."""
    return _recording(module, top=False)


def top_events(module) -> AbstractContextManager[list[Event]]:
    """``with top_events(m) as events:`` the block's top-level op events only (nested ops run
    without observer)."""
    return _recording(module, top=True)


def align(events: Sequence[Event], names: Sequence[str],
          optional: Sequence[bool] | None = None) -> list[int | None] | None:
    """For each recorded op name, the index of its event in a tree step's ``events`` (in start
    order); None for an ``optional`` op (a view: no work) the plain run did not issue. The whole
    result is None when they do not line up.

    An event whose name is the next op's matches it, and its nested events are skipped (they ran
    inside the op); any other event is opened (its nested events are searched) or passed. An op
    is looked for up to :data:`WINDOW` top-level events ahead (top-level events that issue no
    recorded op lie between: ``dropout`` in eval mode, a no-op ``to``); an optional op not found
    there is absent (under a dispatch mode, autograd ``detach``-es the outputs it saves)."""
    optional = optional or [False] * len(names)
    top_of = _top_positions(events)
    starts = [i for i, e in enumerate(events) if e.depth == 0] + [len(events)]

    def find(name: str, start: int, stop: int | None = None) -> int | None:
        """The first event named ``name`` from ``start``, within the window and before ``stop``."""
        if start >= len(events):
            return None
        limit = starts[min(top_of[start] + WINDOW, len(starts) - 1)]
        if stop is not None:
            limit = min(limit, stop)
        return next((j for j in range(start, limit) if _same_op(events[j].name, name)), None)

    required = [k for k, may_lack in enumerate(optional) if not may_lack] + [len(names)]
    matched: list[int | None] = []
    i, r = 0, 0  # next event to search from; next required op (index into ``required``)
    for k, name in enumerate(names):
        if k == required[r]:
            r += 1
            found = find(name, i)
            if found is None:
                return None
        else:  # an optional op matches only before the next required op's event
            nxt = required[r]
            bound = find(names[nxt], i) if nxt < len(names) else None
            found = find(name, i, bound)
        matched.append(found)
        if found is not None:
            i = found + 1
            while i < len(events) and events[i].depth > events[found].depth:
                i += 1
    return matched


def _top_positions(events: Sequence[Event]) -> list[int]:
    """Event index -> position of the top-level event it belongs to."""
    positions, position = [], -1
    for e in events:
        position += e.depth == 0
        positions.append(position)
    return positions


def _same_op(event: str, recorded: str) -> bool:
    return event == recorded or _EQUIVALENT.get(event) == recorded


@dataclass(frozen=True)
class TimedStep:
    """One timed step: its top-level events and its bounds (ns, the timer's clock)."""

    events: Sequence[Event]
    start_ns: int
    end_ns: int


@dataclass(frozen=True)
class OpTiming:
    """Per recorded op: its time (``op_s``) and the host time before it (``host_s``: since the
    previous recorded op ended, or the step began), medians over the timed steps, in seconds;
    ``after_s``: the host time from the last op's end to the step's end."""

    op_s: list[float]
    host_s: list[float]
    after_s: float


def op_times(tree: Sequence[Event], steps: Sequence[TimedStep], names: Sequence[str],
             optional: Sequence[bool] | None = None, event_cost_s: float = 0.0
             ) -> OpTiming | None:
    """Each recorded op's time and the host time before it (module doc; an optional op the plain
    run did not issue gets 0 and 0). Host times lose the timer's own cost, ``event_cost_s`` per
    top-level event (:func:`event_cost`). None when the tree step or a timed step does not line
    up with the recorded ops."""
    matched = align(tree, names, optional)
    if matched is None or not steps:
        return None
    top_of = _top_positions(tree)
    top_names = [e.name for e in tree if e.depth == 0]
    if any([e.name for e in step.events] != top_names for step in steps):
        return None
    members: dict[int, list[int]] = {}  # top-level position -> recorded ops inside it
    for op, i in enumerate(matched):
        if i is not None:
            members.setdefault(top_of[i], []).append(op)
    times, host = [0.0] * len(names), [0.0] * len(names)
    previous = -1  # top-level position of the previous recorded op
    for top, ops in sorted(members.items()):
        duration = statistics.median(step.events[top].seconds for step in steps)
        weights = [tree[matched[op]].seconds for op in ops]
        total = sum(weights)
        for op, weight in zip(ops, weights, strict=True):
            times[op] = duration * (weight / total if total > 0 else 1 / len(ops))
        host[ops[0]] = _host(steps, previous, top, event_cost_s)
        previous = top
    return OpTiming(times, host, _host(steps, previous, len(top_names), event_cost_s))


def _host(steps: Sequence[TimedStep], previous: int, top: int, event_cost_s: float) -> float:
    """Median time from the end of top-level event ``previous`` (-1: the step's start) to the
    start of ``top`` (past the last: the step's end), less the timer's cost of the events that
    start in it: those in between, and ``top``."""
    def gap(step: TimedStep) -> int:
        begin = step.events[previous].end_ns if previous >= 0 else step.start_ns
        end = step.events[top].start_ns if top < len(step.events) else step.end_ns
        return end - begin

    starts = min(top, len(steps[0].events) - 1) - previous
    return max(statistics.median(map(gap, steps)) * 1e-9 - starts * event_cost_s, 0.0)


def event_cost(module, calls: int = 2000, rounds: int = 5) -> float:
    """The timer's own cost per top-level event in seconds: the median over ``rounds`` of a loop
    of ``calls`` tiny ops timed with and without the timer, their difference per call."""
    import torch

    x = torch.zeros(4)

    def loop() -> int:
        start = time.perf_counter_ns()
        for _ in range(calls):
            torch.ops.aten.alias.default(x)
        return time.perf_counter_ns() - start

    extra = []
    for _ in range(rounds):
        bare = loop()
        with top_events(module):
            timed = loop()
        extra.append((timed - bare) / calls)
    return max(statistics.median(extra), 0.0) * 1e-9
