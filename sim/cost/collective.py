"""Collective communication time over the device's scale-up link (alpha-beta model).

For n ranks and a message of S bytes on links of bandwidth B per direction and latency alpha, the
bandwidth-optimal ring algorithms take (Thakur, Rabenseifner, Gropp, "Optimization of Collective
Communication Operations in MPICH", IJHPCA 19(1), 2005, section 4; NCCL's "bus bandwidth"
definition in nccl-tests/doc/PERFORMANCE.md uses the same factors):

    all-reduce:               2 (n-1) alpha + 2 (n-1)/n * S / B
    all-gather, reduce-scatter: (n-1) alpha +   (n-1)/n * S / B
    all-to-all:                 (n-1) alpha +   (n-1)/n * S / B
    send/recv (point to point):       alpha +             S / B

S is the full (per-rank input) buffer for all-reduce, the gathered output for all-gather and the
input for reduce-scatter. Topology-aware algorithms (tree, NVLS) and link sharing are modeled by
the many-device simulator; this is the single-link baseline.
"""

from __future__ import annotations

from sim.cost.roofline import KernelTime
from sim.errors import InputError
from sim.hardware import HardwareSpec, Link

__all__ = ["COLLECTIVES", "collective_time", "scale_up_link"]

# kind -> (latency steps per (n-1), bandwidth factor per (n-1)/n)
COLLECTIVES = {
    "allreduce": (2, 2),
    "allgather": (1, 1),
    "reducescatter": (1, 1),
    "alltoall": (1, 1),
}
_LINK_PREFERENCE = ("nvlink", "infinity_fabric", "upi", "pcie", "infiniband", "ethernet")


def scale_up_link(spec: HardwareSpec) -> Link:
    """The fastest link kind a device uses to reach its peers."""
    for kind in _LINK_PREFERENCE:
        link = spec.link(kind)
        if link is not None:
            return link
    raise InputError(f"{spec.name} has no links to model a collective", source=spec.path,
                     field="links")


def collective_time(
    spec: HardwareSpec, *, kind: str, size_bytes: float, num_ranks: int
) -> KernelTime:
    """Ring time of collective ``kind`` over ``num_ranks`` devices like ``spec``."""
    link = scale_up_link(spec)
    if kind == "sendrecv":
        steps, fraction = 1, 1.0
    elif kind in COLLECTIVES:
        lat_factor, bw_factor = COLLECTIVES[kind]
        steps = lat_factor * (num_ranks - 1)
        fraction = bw_factor * (num_ranks - 1) / num_ranks
    else:
        raise InputError(f"unknown collective {kind!r}; one of "
                         f"{', '.join([*COLLECTIVES, 'sendrecv'])}", field="kind")
    if num_ranks < 2 and kind != "sendrecv":
        return KernelTime(t_s=0.0, bound="link", detail={"num_ranks": num_ranks})
    t_latency = steps * link.latency_s
    t_bandwidth = fraction * size_bytes / link.bandwidth_bytes_per_s
    detail = {
        "link": link.name,
        "link_bytes_per_s": link.bandwidth_bytes_per_s,
        "num_ranks": num_ranks,
        "algorithm": "ring",
        "t_latency_s": t_latency,
        "t_bandwidth_s": t_bandwidth,
        "bus_bytes": fraction * size_bytes,
    }
    return KernelTime(t_s=t_latency + t_bandwidth, bound="link", detail=detail)
