"""Collectives on a system's topology: latency plus flows on the ports each rank uses.

A collective among GPUs G of a system is priced per algorithm and protocol, as NCCL's tuner does
(NVIDIA/nccl ``src/graph/tuning.cc`` v2.28, the constants :mod:`sim.cost.collective` cites), and
the fastest is taken. Its time alone is ``latency + max over its flows of bytes / rate``; in the
simulator the flows share their ports with concurrent transfers (:mod:`sim.cluster.links`).

Legend: n = |G| ranks, D = scale-up domains spanned, l = n / D ranks per domain, S = message bytes
(nccl-tests convention), f = the collective's bandwidth factor (all-reduce 2, others 1).

- **One domain** (D = 1): the single-device-spec model of :mod:`sim.cost.collective` (ring with
  LL / LL128 / Simple, NVLS on an NVSwitch with NVLink SHARP), on the system's scale-up link. On a
  mesh (xGMI) a group of n uses n - 1 of the G - 1 peer links of each GPU.
- **Across domains, ring**: every rank sends f (n-1)/n S over its scale-up port (when l > 1), and
  the traffic crossing domains leaves through the group's NICs: each ring (NCCL channel) crosses
  each domain boundary once and the channels use different NICs, so a rank's NIC carries
  f (n-1)/n S / l (Jeaugey, "Massively Scale Your Deep Learning Training with NCCL 2.4", NVIDIA
  blog 2019: rings over all GPUs, one NIC per channel). Latency (tuning.cc): base_p +
  (steps - k) * hwLat[intra][ring][p] + k * hwLat[NET][ring][p], with steps = f (n - 1) and k =
  the steps that cross the network (all-reduce 2 D, others D - 1).
- **Across domains, tree** (all-reduce only): NCCL's intra-domain chain plus inter-domain double
  binary tree: the same bytes per port as the ring (each domain sends and receives about 2 S in
  the two trees) at 0.9 of the ring's bus bandwidth, latency base_p + 2 (l - 1)
  hwLat[intra][tree][p] + 2 log2(D) hwLat[NET][tree][p].
- **Point to point** (pipeline send/recv): the route's bottleneck link, S bytes.

A port's capacity is what the link sustains (NIC line rate x ``FABRIC_EFFICIENCY``; scale-up
bandwidth x the fitted ``link_efficiency``); a system spec with a ``collectives`` section
(measured on that system, ``tksim calibrate --collectives``) replaces the transferable A100 fit's
collective parameters with its own; each flow is also capped at the rate its algorithm
and protocol reach alone, so sharing slows a flow only when the port is really oversubscribed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from sim.cost.collective import COLLECTIVES, NVLS_DTYPES, bus_efficiency, collective_times
from sim.cost.gpu_params import GpuParams
from sim.errors import InputError

__all__ = ["CommPlan", "collective_plan", "p2p_plan", "FABRIC_EFFICIENCY"]

#: Achievable fraction of InfiniBand / RoCE line rate for large NCCL transfers. Estimate: the
#: NDR 400 Gb/s (50 GB/s) NIC delivers ~48.5 GB/s of payload in ib_write_bw (NVIDIA ConnectX-7
#: product brief: "up to 400 Gb/s"; perftest results in NVIDIA's DGX H100 SuperPOD reference
#: architecture, RA-11333-001, section "Network": ~97%), NCCL's Simple protocol ~0.92 of that.
FABRIC_EFFICIENCY = 0.9
# tuning.cc hwLatencies (us -> s): NET ring LL 2.7, LL128 4.0, Simple 14.0; NET tree 5.0, 8.5,
# 14.0; NVLink ring 0.6 / 1.9 / 3.4, NVLink tree 0.6 / 1.25 / 4.
_PROTOCOLS = {  # name: (base latency s, payload fraction of bus bandwidth)
    "LL": (6.6e-6, 0.5), "LL128": (14.0e-6, 0.92), "Simple": (8.4e-6, 1.0)}
_HW_LAT = {  # (algorithm, link class) -> per-protocol per-step latency (s)
    ("ring", "net"): {"LL": 2.7e-6, "LL128": 4.0e-6, "Simple": 14.0e-6},
    ("tree", "net"): {"LL": 5.0e-6, "LL128": 8.5e-6, "Simple": 14.0e-6},
    ("ring", "up"): {"LL": 0.6e-6, "LL128": 1.9e-6, "Simple": 3.4e-6},
    ("tree", "up"): {"LL": 0.6e-6, "LL128": 1.25e-6, "Simple": 4.0e-6},
}

_RING_PLATEAU = 1.9  # tuning.cc ncclTopoGetAlgoTime: multi-node ring Simple all-reduce latency
_TREE_BANDWIDTH = 0.9  # tuning.cc: tree bus bandwidth = 0.9 x the graph's
Flow = tuple[Hashable, float, float, float]  # (port, port bytes/s, bytes, rate cap bytes/s)


@dataclass(frozen=True)
class CommPlan:
    """How one rank takes part in a collective: a latency, then its flows (all at once)."""

    latency_s: float
    flows: tuple[Flow, ...]
    algorithm: str
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def alone_s(self) -> float:
        """Time with no competing traffic."""
        return self.latency_s + max((f[2] / f[3] for f in self.flows), default=0.0)


def collective_plan(system, kind: str, size_bytes: float, gpus: tuple[int, ...],
                    params: GpuParams, rank: int | None = None,
                    algo: str | None = None, dtype: str | None = None) -> CommPlan:
    """The fastest plan of collective ``kind`` of ``size_bytes`` among ``gpus``, seen from GPU
    ``rank`` (default: the first of ``gpus``); ``algo`` (ring, tree, nvls) forces one algorithm,
    an :class:`InputError` where it is not available; ``dtype``: the reduced element type (the
    switch reduces only some, :data:`~sim.cost.collective.NVLS_DTYPES`)."""
    options = collective_options(system, kind, size_bytes, gpus, params, rank, dtype)
    if algo is not None:
        options = [p for p in options
                   if p.algorithm.split("/")[0] == algo or p.algorithm == "none"]
        if not options:
            what = f"{kind} of {dtype}" if dtype else kind
            raise InputError(f"algorithm {algo!r} is not available for {what} over {len(gpus)} "
                             f"GPUs of {system.name}", field="--algo")
    return min(options, key=lambda p: (p.alone_s, p.algorithm))


def collective_options(system, kind: str, size_bytes: float, gpus: tuple[int, ...],
                       params: GpuParams, rank: int | None = None,
                       dtype: str | None = None) -> list[CommPlan]:
    """Every algorithm / protocol NCCL would consider for this collective (module doc)."""
    if kind not in COLLECTIVES:
        raise InputError(f"unknown collective {kind!r}; one of {', '.join(COLLECTIVES)}",
                         field="collective")
    params = system.collective_params(params)
    n, me = len(gpus), gpus[0] if rank is None else rank
    if n < 2 or size_bytes <= 0:
        return [CommPlan(0.0, (), "none", {"num_ranks": n})]
    domains = sorted({system.domain_of(g) for g in gpus})
    if len(domains) == 1:
        return _intra_domain(system, kind, size_bytes, n, me, params, dtype)
    return _across_domains(system, kind, size_bytes, n, len(domains), me, params)


def p2p_plan(system, src: int, dst: int, size_bytes: float, params: GpuParams) -> CommPlan:
    """A send of ``size_bytes`` from GPU ``src`` to GPU ``dst`` (pipeline activations)."""
    params = system.collective_params(params)
    route = system.route(src, dst)
    if route.via == "fabric":
        fabric = system.fabric
        nic = fabric.nic_bandwidth_bytes_per_s * fabric.nics_per_gpu / fabric.oversubscription
        latency = params.collective_latency_s + params.collective_latency_scale * (
            _PROTOCOLS["Simple"][0] + route.latency_s)
        nic *= FABRIC_EFFICIENCY
        flow = ((src, "net"), nic, size_bytes, nic)
        return CommPlan(latency, (flow,), "p2p", {"via": "fabric", "hops": route.hops})
    # one transfer between two GPUs has no ring to fill: it runs at the link's sustained rate
    # (link_efficiency), without the ring's 1/n drop; latency as NCCL's send/recv
    spec = _device_on(system, _peer_bandwidth(system, 2))
    r = collective_times(spec, params, kind="sendrecv", size_bytes=size_bytes, num_ranks=2)
    link_bw = spec.links[0].bandwidth_bytes_per_s * params.link_efficiency
    if route.via == "host":  # through PCIe switches / CPU sockets: the route's narrowest link
        link_bw = min(link_bw, route.bandwidth_bytes_per_s * params.link_efficiency)
    flow = ((src, "up"), link_bw, size_bytes, link_bw)
    return CommPlan(float(r["t_latency_s"]), (flow,), "p2p", {"via": route.via, "hops": route.hops})


# -- one scale-up domain ------------------------------------------------------------------------
def _intra_domain(system, kind, size, n, me, params, dtype) -> list[CommPlan]:
    """The ring (best protocol) and, where the switch reduces ``dtype`` in the network, NVLS when
    NCCL's model prefers it."""
    bandwidth = _peer_bandwidth(system, n)
    plans = [_intra_option(_device_on(system, bandwidth, nvls=False), kind, size, n, me, params)]
    if system.scale_up.in_network_reduction and kind == "allreduce" and (
            dtype is None or dtype in NVLS_DTYPES):
        nvls = _intra_option(_device_on(system, bandwidth, nvls=True), kind, size, n, me, params)
        if nvls.algorithm == "nvls":
            plans.append(nvls)
    return plans


def _intra_option(spec, kind, size, n, me, params) -> CommPlan:
    r = collective_times(spec, params, kind=kind, size_bytes=size, num_ranks=n)
    nvls = bool(r["nvls"])
    per_direction = size * (1 + 1 / n) if nvls else COLLECTIVES[kind][1] * (n - 1) / n * size
    t_bw = float(r["t_bandwidth_s"])
    link_bw = spec.links[0].bandwidth_bytes_per_s * params.link_efficiency
    flow = ((me, "up"), link_bw, per_direction, per_direction / t_bw if t_bw > 0 else link_bw)
    return CommPlan(float(r["t_latency_s"]), (flow,), "nvls" if nvls else "ring",
                    {"num_ranks": n, "domains": 1, "bus_bytes": per_direction})


def _peer_bandwidth(system, n: int) -> float:
    """Scale-up bandwidth per direction one GPU can use with n - 1 peers in its domain."""
    bw = system.scale_up.bandwidth_bytes_per_s
    if system.scale_up_kind == "mesh" and system.gpus_per_domain > 1:
        return bw * min(n - 1, system.gpus_per_domain - 1) / (system.gpus_per_domain - 1)
    return bw


def _device_on(system, bandwidth: float, nvls: bool = False):
    """The system's GPU spec with the scale-up link as its only link (what the single-device
    collective model prices), at ``bandwidth``, with or without in-network reduction."""
    link = dataclasses.replace(system.scale_up, bandwidth_bytes_per_s=bandwidth,
                               in_network_reduction=nvls)
    return dataclasses.replace(system.device, links=(link,))


# -- across domains -----------------------------------------------------------------------------
def _across_domains(system, kind, size, n, num_domains, me, params) -> list[CommPlan]:
    fabric = system.fabric
    if fabric is None:
        raise InputError(f"a collective spans {num_domains} scale-up domains but system "
                         f"{system.name} has no fabric", source=system.path, field="fabric")
    local = max(1, n // num_domains)
    factor = COLLECTIVES[kind][1] * (n - 1) / n * size
    nic_bw = fabric.nic_bandwidth_bytes_per_s * fabric.nics_per_gpu / fabric.oversubscription \
        * FABRIC_EFFICIENCY
    up_bw = _peer_bandwidth(system, local)
    up_port = up_bw * params.link_efficiency
    steps = COLLECTIVES[kind][0] * (n - 1)
    up_eff = float(bus_efficiency(params, steps))
    # steps that cross the network (tuning.cc nInterSteps): all-reduce 2 (D - 1), all-gather
    # and reduce-scatter D - 1, all-to-all D
    net_steps = {"allreduce": 2 * (num_domains - 1), "alltoall": num_domains}.get(
        kind, num_domains - 1)
    plans = []
    for protocol, (base, fraction) in _PROTOCOLS.items():
        for algorithm in ("ring", "tree") if kind == "allreduce" else ("ring",):
            if algorithm == "ring":
                hw = (steps - net_steps) * _HW_LAT[("ring", "up")][protocol] + \
                    net_steps * _HW_LAT[("ring", "net")][protocol]
            else:
                hw = 2 * (local - 1) * _HW_LAT[("tree", "up")][protocol] + \
                    2 * math.log2(num_domains) * _HW_LAT[("tree", "net")][protocol]
            nccl = base + hw
            if algorithm == "ring" and protocol == "Simple" and kind == "allreduce" and \
                    size >= n / 16 * 65536:
                nccl *= _RING_PLATEAU  # tuning.cc: "plateau effect of ring" across nodes
            latency = params.collective_latency_s + params.collective_latency_scale * nccl
            tree = _TREE_BANDWIDTH if algorithm == "tree" else 1.0
            flows = [((me, "net"), nic_bw, factor / local, nic_bw * fraction * tree)]
            if local > 1:
                flows.append(((me, "up"), up_port, factor, up_bw * up_eff * fraction * tree))
            plans.append(CommPlan(latency, tuple(flows), f"{algorithm}/{protocol}",
                                  {"num_ranks": n, "domains": num_domains, "bus_bytes": factor}))
    return plans
