"""Count the Python-level torch calls a program makes between the aten ops it issues.

The host time of an eager step that no kernel accounts for is the model's own Python: module
calls, argument handling, cache bookkeeping, and the Python side of every torch call. Measured
on this project's 2-core machine (2026-11-29, torch 2.13.0, 1 thread, seq 64): the step's wall
time minus its simulated ops came to 0.85-2.82 us per aten op over mixtral-tiny, llama-tiny and
gpt2-tiny prefill and decode, but to 0.89-1.73 us per Python-level torch call -- a model that
issues two aten ops per call (``F.linear``: ``t`` + ``mm``) or one call per aten op spends
about the same per call, not per op.

:class:`HostCalls` is a ``TorchFunctionMode`` that counts every torch function and ``Tensor``
method or attribute the program calls from Python (a call's own internals run with the mode
off and are not counted). :class:`workloads.recorder.OpRecorder` takes the count since its
previous op for each op it records (``attrs["host_calls"]``), so each op carries the Python
calls that led to it; ops issued from C++ (a composite's later ops, autograd's backward) get 0.
The recorder pauses the count while its own Python runs (:meth:`HostCalls.paused`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch.overrides import TorchFunctionMode

__all__ = ["HostCalls"]


class HostCalls(TorchFunctionMode):
    """Counts Python-level torch calls; :meth:`take` returns those since the last take."""

    def __init__(self) -> None:
        super().__init__()
        self._count = 0
        self._paused = False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if not self._paused:
            self._count += 1
        return func(*args, **(kwargs or {}))

    def take(self) -> int:
        """Calls counted since the previous take (or since the mode was created)."""
        count, self._count = self._count, 0
        return count

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Do not count the calls made inside (the recorder's own bookkeeping)."""
        was, self._paused = self._paused, True
        try:
            yield
        finally:
            self._paused = was
