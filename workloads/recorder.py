"""Record every aten op a PyTorch program runs, as ``sim.trace.Op`` records in program order.

:class:`OpRecorder` is a ``TorchDispatchMode``: while it is active, each aten call (below autograd,
after composite ops such as ``linear`` decomposed) passes through :meth:`__torch_dispatch__`, which
runs the op, times it with ``time.perf_counter_ns`` when its tensors are real (not fake), and
records name, tensor shapes and dtypes, cost (``workloads.op_costs``), module path and data
dependencies.

Dependencies come from storage identity, so views and in-place ops are followed exactly:

- an op depends on the last op that wrote each storage it reads (read after write);
- an op that writes a storage (a fresh output, an in-place or ``out=`` argument) also depends on the
  last writer of that storage and on every op that read it since (write after write / after read),
  and becomes its last writer;
- a view (output aliasing an input's storage, nothing written) costs nothing and writes nothing:
  an op reading the view depends on whoever last wrote the base storage.

Labels: each op gets a module path and extra ``attrs`` from the recorder's ``labeller`` (by default
the ``module_path`` callable and no attrs) and the current ``phase``. A program that runs several
phases under one recorder (a training step: forward, backward, optimizer) sets ``phase`` and
``labeller`` between them, so dependencies run across the phases. A labeller that marks an op
``host_scalar`` (it works on a host-side scalar in the run the trace stands for) makes it no sync.
With a :class:`workloads.host_calls.HostCalls` counter (``host_calls=``), each op also carries
``attrs["host_calls"]``: the Python-level torch calls made since the previous op.

Lifecycle: create, enter (``with OpRecorder(...) as rec:``), run the program, exit; ``rec.ops``
then holds ops with ids 0..n-1 in the order they were issued.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from functools import cache
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensor
from torch.utils._python_dispatch import TorchDispatchMode

from sim.trace import PHASES, Op
from workloads.host_calls import HostCalls
from workloads.op_costs import OpCall, op_cost
from workloads.tensors import storage_ref, tensor_meta, tensors_in

__all__ = ["OpRecorder", "Labeller", "NO_WORK_OPS"]

#: (input tensors, output tensors) of an op -> (module path, extra attrs) to record with it.
Labeller = Callable[[Sequence[torch.Tensor], Sequence[torch.Tensor]], tuple[str, Mapping[str, Any]]]
#: ``on_op(count)`` is called every this many recorded ops (progress display).
PROGRESS_EVERY_OPS = 1024

#: Ops that only query metadata: not recorded (fake tensors emit ~1,000 ``prim::device`` per step).
NO_WORK_OPS = frozenset({
    "aten::sym_size", "aten::sym_stride", "aten::sym_numel", "aten::sym_storage_offset",
    "aten::size", "aten::stride", "aten::dim", "aten::is_contiguous", "aten::is_same_size",
    "aten::_has_compatible_shallow_copy_type", "aten::is_non_overlapping_and_dense",
})


class OpRecorder(TorchDispatchMode):
    """Records aten ops as :class:`sim.trace.Op` (see the module doc).

    ``module_path`` returns the path of the running module (e.g. ``ModulePath(model).current``
    bound as a lambda); ``labeller``, when set, replaces it and may add attrs; ``phase`` is
    stamped on every op; ``on_op(count)`` is called every :data:`PROGRESS_EVERY_OPS` ops.
    """

    def __init__(self, *, module_path: Callable[[], str] = lambda: "", phase: str = "forward",
                 labeller: Labeller | None = None,
                 on_op: Callable[[int], None] | None = None,
                 host_calls: HostCalls | None = None):
        super().__init__()
        self.module_path = module_path
        self.labeller = labeller
        self.phase = phase
        self.on_op = on_op
        self.host_calls = host_calls
        self.ops: list[Op] = []
        self._last_writer: dict[int, int] = {}  # storage id -> op id
        self._readers: dict[int, set[int]] = {}  # storage id -> ops that read it since its write
        self._storages: dict[int, Any] = {}  # storage id -> weak ref that keeps the id unique

    @property
    def phase(self) -> str:
        """The phase stamped on the ops recorded from now on (one of ``sim.trace.PHASES``)."""
        return self._phase

    @phase.setter
    def phase(self, phase: str) -> None:
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; one of {', '.join(PHASES)}")
        self._phase = phase

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket._qualified_op_name  # "aten::mm"
        if name in NO_WORK_OPS or name.startswith(("prim::", "profiler::")):
            return func(*args, **kwargs)
        with self.host_calls.paused() if self.host_calls is not None else nullcontext():
            inputs = tensors_in((*args, *kwargs.values()))
            start_ns = time.perf_counter_ns()
            out = func(*args, **kwargs)
            elapsed_ns = time.perf_counter_ns() - start_ns
            outputs = tensors_in(out)
            real = not any(isinstance(t, FakeTensor) for t in (*inputs, *outputs))
            self._record(func, name, args, kwargs, inputs, outputs,
                         elapsed_ns * 1e-9 if real else None)
        return out

    def _record(self, func, name: str, args: Sequence, kwargs: Mapping, inputs: list,
                outputs: list, measured_s: float | None) -> None:
        op_id = len(self.ops)
        bound = _bind(func, args, kwargs)
        reads = self._storage_ids(inputs)
        mutated = [t for arg in _written_args(func) for t in tensors_in(bound.get(arg))]
        written = self._storage_ids(mutated)
        written |= self._storage_ids(outputs) - reads  # fresh outputs
        is_view = func.is_view or torch.Tag.inplace_view in func.tags or (
            bool(outputs) and not written)
        if is_view:
            written = set()
        deps = self._dependencies(reads, written) - {op_id}
        self._update(op_id, reads - written, written, is_view)
        cost = op_cost(OpCall(name=name, args=bound, inputs=inputs, outputs=outputs,
                              is_view=is_view, tags=frozenset(func.tags)))
        if self.labeller is None:
            module, attrs = self.module_path(), cost.attrs
        else:
            module, extra = self.labeller(inputs, outputs)
            attrs = {**cost.attrs, **extra} if extra else cost.attrs
        if self.host_calls is not None:
            attrs = {**attrs, "host_calls": self.host_calls.take()}
        self.ops.append(Op(
            id=op_id, name=name, category=cost.category, flops=cost.flops,
            bytes_read=cost.bytes_read, bytes_written=cost.bytes_written, deps=tuple(sorted(deps)),
            inputs=tuple(map(tensor_meta, inputs)), outputs=tuple(map(tensor_meta, outputs)),
            dtype=cost.dtype, module=module, phase=self._phase,
            sync=cost.sync and not attrs.get("host_scalar", False),
            measured_s=measured_s, attrs=attrs,
        ))
        if self.on_op is not None and len(self.ops) % PROGRESS_EVERY_OPS == 0:
            self.on_op(len(self.ops))

    def _storage_ids(self, tensors) -> set[int]:
        ids = set()
        for t in tensors:
            ref = storage_ref(t)
            if ref is not None:
                self._storages.setdefault(ref.cdata, ref)
                ids.add(ref.cdata)
        return ids

    def _dependencies(self, reads: set[int], written: set[int]) -> set[int]:
        deps = {self._last_writer[s] for s in reads | written if s in self._last_writer}
        for s in written:
            deps.update(self._readers.get(s, ()))
        return deps

    def _update(self, op_id: int, only_read: set[int], written: set[int], is_view: bool) -> None:
        if not is_view:  # a view reads no data, so a later write need not wait for it
            for s in only_read:
                self._readers.setdefault(s, set()).add(op_id)
        for s in written:
            self._last_writer[s] = op_id
            self._readers[s] = set()


def _bind(func, args: Sequence, kwargs: Mapping) -> dict[str, Any]:
    """The call's arguments by schema name (positional ones matched in order)."""
    bound = dict(kwargs)
    for argument, value in zip(func._schema.arguments, args, strict=False):
        bound[argument.name] = value
    return bound


@cache
def _written_args(func) -> tuple[str, ...]:
    """Names of the arguments the op's schema marks as mutated (``Tensor(a!)``: in-place, out=)."""
    return tuple(a.name for a in func._schema.arguments
                 if a.alias_info is not None and a.alias_info.is_write)


