"""The machine a capture runs on: its description and torch's thread count while timing."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["host_description", "torch_threads"]


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block on ``threads`` torch intra-op threads; restore the previous count after."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def host_description() -> str:
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
