"""Progress of a long capture on stderr: a tqdm bar over its stages, with the op count.

Stages: build (the model), prepare (KV cache, optimizer state), warm-up (each un-recorded step),
record (each recorded step); while recording, the bar's postfix shows the ops recorded so far.
Disabled (no output at all) unless the caller asks for it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm

__all__ = ["Stages"]


class Stages:
    """A progress bar over ``total`` stages; ``enabled=False`` prints nothing."""

    def __init__(self, *, total: int, desc: str, enabled: bool):
        self._bar = tqdm(total=total, desc=desc, unit="stage", file=sys.stderr,
                         disable=not enabled, leave=True)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Show ``name`` while the block runs; count the stage done after it."""
        self._bar.set_postfix_str(name)
        yield
        self._bar.update(1)

    def ops(self, count: int) -> None:
        """Show the ops recorded so far (a ``workloads.recorder.OpRecorder`` ``on_op``)."""
        self._bar.set_postfix_str(f"record: {count} ops")

    def close(self) -> None:
        self._bar.close()
