"""Collective communication time among ``num_ranks`` devices of one spec on its scale-up link.

For n ranks and a message of S bytes on links of bandwidth B per direction, the bandwidth-optimal
ring algorithms move (Thakur, Rabenseifner, Gropp, "Optimization of Collective Communication
Operations in MPICH", IJHPCA 19(1), 2005, section 4; NCCL's "bus bandwidth" in
nccl-tests/doc/PERFORMANCE.md uses the same factors):

    all-reduce:                 2 (n-1) steps, 2 (n-1)/n * S per rank and direction
    all-gather, reduce-scatter:   (n-1) steps,   (n-1)/n * S
    all-to-all:                   (n-1) steps,   (n-1)/n * S
    send/recv (point to point):       1 step,              S

S is the full (per-rank input) buffer for all-reduce, the gathered output for all-gather and the
input for reduce-scatter (the nccl-tests convention).

On an NVSwitch with in-network reduction (NVLink SHARP, ``Link.in_network_reduction``), NCCL's
NVLS all-reduce lets the switch reduce and multicast: each rank sends its whole buffer once
(``multimem.ld_reduce`` of every shard) and receives it once (``multimem.st`` multicast), about
S (1 + 1/n) per direction in 2 steps instead of 2 (n-1)/n S in 2 (n-1) steps (NVIDIA, "NCCL 2.12"
release notes and NVLink SHARP in the H100 whitepaper, section "NVLink Switch System"). Like NCCL's
tuner, the model takes the fastest algorithm and protocol. NCCL's own tuning model
(NVIDIA/nccl ``src/graph/tuning.cc``, ``ncclTopoTuneModel`` / ``ncclTopoGetAlgoTime``) prices a
ring collective per protocol p as ``latency_p + bytes / bandwidth_p`` with

    latency_p   = baseLat_p + steps * hwLat_p      ring: baseLat LL 3.6, LL128 10.0, Simple 8.4 us;
                                                   hwLat NVLink .47, 1.9, 3.4 us; PCIe 1.0, 2.5, 5.7
    bandwidth_p = bus bandwidth * {LL: 1/4 (all-reduce) or 1/3, LL128: 0.92, Simple: 1}

tksim uses exactly that structure with the link's bandwidth (tuning.cc at commit 01afd20a). The
calibration scales NCCL's latencies (``collective_latency_scale``), adds a fixed launch and
synchronization cost (``collective_latency_s``) and sets the bus efficiency with n ranks:

    t_p = collective_latency_s + collective_latency_scale * latency_p
          + bytes_per_direction / (B * eff(n) * protocol_fraction_p)
    eff(n) = link_efficiency - link_efficiency_drop / n

eff(n) is the fraction of the link NCCL's pipelined channels sustain; it grows with the ring size.
NVLS is priced like the Simple ring with its 2 steps. On a PCIe-only device the ring runs over its
PCIe link (peer to peer).
"""

from __future__ import annotations

import numpy as np

from sim.cost.gpu_params import GpuParams
from sim.cost.roofline import KernelTime
from sim.errors import InputError
from sim.hardware import HardwareSpec, Link

__all__ = ["COLLECTIVES", "collective_time", "collective_times", "scale_up_link"]

# kind -> (latency steps per (n-1), bandwidth factor per (n-1)/n)
COLLECTIVES = {
    "allreduce": (2, 2),
    "allgather": (1, 1),
    "reducescatter": (1, 1),
    "alltoall": (1, 1),
}
_LINK_PREFERENCE = ("nvlink", "infinity_fabric", "upi", "pcie", "infiniband", "ethernet")
# NCCL ring protocols (tuning.cc): base latency (s), per-step latency (s) on (NVLink, PCIe),
# fraction of the bus bandwidth the protocol carries as payload
_LL = (3.6e-6, (0.47e-6, 1.0e-6), None)  # fraction: 1/4 for all-reduce, 1/3 otherwise
_LL128 = (10.0e-6, (1.9e-6, 2.5e-6), 0.92)
_SIMPLE = (8.4e-6, (3.4e-6, 5.7e-6), 1.0)


def _protocols(kind: str):
    ll_fraction = 0.25 if kind == "allreduce" else 1 / 3
    return ((_LL[0], _LL[1], ll_fraction), _LL128, _SIMPLE)
_MIN_LINK_EFFICIENCY = 0.05


def scale_up_link(spec: HardwareSpec) -> Link:
    """The fastest link kind a device uses to reach its peers."""
    for kind in _LINK_PREFERENCE:
        link = spec.link(kind)
        if link is not None:
            return link
    raise InputError(f"{spec.name} has no links to model a collective", source=spec.path,
                     field="links")


def collective_times(
    spec: HardwareSpec,
    params: GpuParams,
    *,
    kind: str,
    size_bytes: np.ndarray,
    num_ranks: np.ndarray,
) -> dict[str, np.ndarray]:
    """Times (s) of collective ``kind`` for arrays of sizes and rank counts (see module doc).

    Returns ``t_s``, ``t_latency_s``, ``t_bandwidth_s`` and ``nvls`` (True where NVLS won).
    """
    if kind != "sendrecv" and kind not in COLLECTIVES:
        raise InputError(f"unknown collective {kind!r}; one of "
                         f"{', '.join([*COLLECTIVES, 'sendrecv'])}", field="kind")
    link = scale_up_link(spec)
    size, n = (np.asarray(x, dtype=float) for x in np.broadcast_arrays(size_bytes, num_ranks))
    eff = np.maximum(_MIN_LINK_EFFICIENCY, params.link_efficiency - params.link_efficiency_drop / n)
    rate = link.bandwidth_bytes_per_s * eff
    if kind == "sendrecv":
        steps, per_direction = np.ones_like(n), size
    else:
        lat_factor, bw_factor = COLLECTIVES[kind]
        steps, per_direction = lat_factor * (n - 1), bw_factor * (n - 1) / n * size
    hw = 1 if link.kind == "pcie" else 0
    options = [(_latency_s(params, base, steps * hw_lat[hw]), per_direction / (rate * fraction))
               for base, hw_lat, fraction in _protocols(kind)]
    use_nvls = kind == "allreduce" and link.in_network_reduction
    if use_nvls:  # the Simple protocol's latency with NVLS's 2 steps and S (1 + 1/n) bytes
        options.append((_latency_s(params, _SIMPLE[0], 2 * _SIMPLE[1][hw]),
                        size * (1 + 1 / n) / rate))
    totals = np.stack([t_lat + t_bw for t_lat, t_bw in options])
    pick = np.argmin(totals, axis=0)
    t_lat = np.choose(pick, [np.broadcast_to(o[0], n.shape) for o in options])
    t_bw = np.choose(pick, [np.broadcast_to(o[1], n.shape) for o in options])
    single = (n < 2) & (kind != "sendrecv")
    return {"t_s": np.where(single, 0.0, t_lat + t_bw),
            "t_latency_s": np.where(single, 0.0, t_lat),
            "t_bandwidth_s": np.where(single, 0.0, t_bw),
            "nvls": (pick == len(options) - 1) & use_nvls}


def _latency_s(params: GpuParams, base_s: float, steps_s: np.ndarray) -> np.ndarray:
    return params.collective_latency_s + params.collective_latency_scale * (base_s + steps_s)


def collective_time(
    spec: HardwareSpec,
    *,
    kind: str,
    size_bytes: float,
    num_ranks: int,
    params: GpuParams | None = None,
) -> KernelTime:
    """Time of collective ``kind`` over ``num_ranks`` devices like ``spec``.

    With ``params``: the fastest NCCL algorithm and protocol (module doc). Without: the plain
    alpha-beta ring, ``steps * link latency + bytes / link bandwidth``.
    """
    link = scale_up_link(spec)
    if kind != "sendrecv" and kind not in COLLECTIVES:
        raise InputError(f"unknown collective {kind!r}; one of "
                         f"{', '.join([*COLLECTIVES, 'sendrecv'])}", field="kind")
    if num_ranks < 2 and kind != "sendrecv":
        return KernelTime(t_s=0.0, bound="link", detail={"num_ranks": num_ranks})
    steps, fraction = ((1, 1.0) if kind == "sendrecv" else
                       (COLLECTIVES[kind][0] * (num_ranks - 1),
                        COLLECTIVES[kind][1] * (num_ranks - 1) / num_ranks))
    if params is None:
        t_lat, t_bw = steps * link.latency_s, fraction * size_bytes / link.bandwidth_bytes_per_s
        algorithm = "ring"
    else:
        r = collective_times(spec, params, kind=kind, size_bytes=size_bytes, num_ranks=num_ranks)
        t_lat, t_bw = float(r["t_latency_s"]), float(r["t_bandwidth_s"])
        algorithm = "nvls" if bool(r["nvls"]) else "ring"
        if algorithm == "nvls":
            fraction = 1 + 1 / num_ranks
    detail = {"link": link.name, "link_bytes_per_s": link.bandwidth_bytes_per_s,
              "num_ranks": num_ranks, "algorithm": algorithm, "t_latency_s": t_lat,
              "t_bandwidth_s": t_bw, "bus_bytes": fraction * size_bytes}
    return KernelTime(t_s=t_lat + t_bw, bound="link", detail=detail)
