"""Fake tensors: capture models of any size without allocating them.

Under ``torch._subclasses.fake_tensor.FakeTensorMode`` every tensor carries shape, dtype, strides
and storage identity but no data, and every aten op runs its shape function instead of its kernel
(the same CPU kernel choice as a real run: SDPA stays the CPU flash op). Capture enters the fake
mode first (the outer mode) and the recorder on top, and builds the model inside it, so weights
cost nothing: Llama-2-70B in bf16 is ~0.4 GB of Python objects. Fake ops are not timed
(``measured_s`` is null). Data-dependent control flow (``.item()`` on computed values, ``nonzero``,
MoE routing) raises under fake tensors unless the library avoids it; MoE routing is made static by
``workloads.moe``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from torch import nn
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.utils._pytree import tree_leaves

__all__ = ["fake_mode", "fake_mode_of", "entered", "MODES"]

#: Capture modes: ``real`` tensors on this machine (timed) or ``fake`` tensors (no data).
MODES = ("real", "fake")


def fake_mode() -> FakeTensorMode:
    """A fresh fake mode for capture: build the model and its inputs inside it, e.g.
    ``with fake_mode(): model = MyModel(); x = torch.randn(8, 512)``, then ``capture_module``."""
    return FakeTensorMode(allow_non_fake_inputs=False)


def fake_mode_of(module: nn.Module, inputs: Any = ()) -> FakeTensorMode | None:
    """The fake mode the module's parameters / buffers or the inputs were made in, if fake."""
    tensors: Iterable[Any] = (*module.parameters(), *module.buffers(), *tree_leaves(inputs))
    for t in tensors:
        if isinstance(t, FakeTensor):
            return t.fake_mode
    return None


@contextmanager
def entered(mode: FakeTensorMode | None) -> Iterator[None]:
    """Run the block inside ``mode`` (no-op for None, i.e. real tensors)."""
    with mode if mode is not None else nullcontext():
        yield
