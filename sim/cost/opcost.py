"""The cost of one op on one device: t_i = t_pre + t_calc + t_post, and why.

An :class:`OpCost` is a pure value: the cost model computes it from an op and a spec without any
clock; the simulator decides when it happens. ``bound`` names the resource that sets t_calc:

- ``compute``: matrix or vector FLOPs over the achievable rate,
- ``memory``: bytes over the bandwidth of the level that serves the working set,
- ``latency``: the kernel is too small to fill the device; one memory round trip bounds it,
- ``link``: a collective limited by interconnect bandwidth or latency,
- ``host``: no device work (a view): only host dispatch,
- ``measured``: replayed from a measurement.

``detail`` carries the intermediate quantities (compute time, memory time, waves, memory level)
so that a user can see how the number was made (``tksim op ... --json``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OpCost", "BOUNDS"]

BOUNDS = ("compute", "memory", "latency", "link", "host", "measured")


@dataclass(frozen=True, slots=True)
class OpCost:
    """t_pre (host dispatch + launch), t_calc (sum of kernel times t_k), t_post (completion)."""

    t_pre_s: float
    t_calc_s: float
    t_post_s: float
    bound: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        return self.t_pre_s + self.t_calc_s + self.t_post_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "t_pre_s": self.t_pre_s,
            "t_calc_s": self.t_calc_s,
            "t_post_s": self.t_post_s,
            "total_s": self.total_s,
            "bound": self.bound,
            "detail": dict(self.detail),
        }
