"""Import traces recorded by other tools as tksim traces, and export tksim traces to them.

- :func:`import_torch_profiler`: a ``torch.profiler`` (Kineto) Chrome trace JSON, from any
  machine (CPU or GPU); measured durations, inferred shapes-based costs, chained deps.
- :func:`import_chakra`: a PyTorch execution trace (``ExecutionTraceObserver``, the input of
  MLCommons Chakra's converter); data deps from tensor storage identity, durations from a
  matching profiler trace when given.
- :func:`export_chakra`: a tksim trace as an execution trace JSON that Chakra's tools read.

Formats, limits and examples: ``docs/trace-interop.md``.
"""

from workloads.importers.chakra import import_chakra
from workloads.importers.chakra_export import export_chakra
from workloads.importers.torch_profiler import import_torch_profiler

__all__ = ["export_chakra", "import_chakra", "import_torch_profiler"]
