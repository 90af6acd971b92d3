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

Like NCCL's tuner, the model prices each algorithm and protocol with NCCL's own tuning model
and takes the fastest (NVIDIA/nccl ``src/graph/tuning.cc``, ``ncclTopoTuneModel`` /
``ncclTopoGetAlgoTime``, v2.28.3: ``ncclTunerConstantsDefaults``; the measurements ran NCCL
2.27-2.29). A ring collective with protocol p costs ``latency_p + bytes / bandwidth_p``:

    latency_p   = baseLat_p + steps * hwLat_p      baseLat LL 6.6, LL128 14.0, Simple 8.4 us;
                                                   hwLat NVLink 0.6, 1.9, 3.4 us; PCIe 1.0, -, 5.7
    bandwidth_p = bus bandwidth * {LL: 1/2, capped at llMaxBw; LL128: 0.92; Simple: 1}

llMaxBw is NCCL's single-node LL cap per architecture (compute capability 7.x: 39, 8.x: 87.7,
9.x: 141, 10.x: 282 GB/s of bus bandwidth); LL128 runs only within NVLink (``typeIntra <=
PATH_NVB``), so a PCIe-only device has LL and Simple.

On an NVSwitch with in-network reduction (NVLink SHARP, ``Link.in_network_reduction``), NCCL's
NVLS all-reduce lets the switch reduce and multicast: each rank sends its whole buffer once
(``multimem.ld_reduce`` of every shard) and receives it once (``multimem.st`` multicast), about
S (1 + 1/n) per direction instead of the ring's 2 (n-1)/n S (NVIDIA, "NCCL 2.12" release notes;
NVLink SHARP in the H100 whitepaper, section "NVLink Switch System"). NCCL derates NVLS by
``nvlsEfficiency`` per architecture (tuning.cc: Hopper 0.85, Blackwell 0.74; none before) and
prices its latency at ``hwLat[NVLink][NVLS][Simple]`` = 25 us, with no per-step term. The switch
reduces only some element types: NCCL runs NVLS for fp16, bf16, fp32, fp64 and 32/64-bit integer
sums and never for 8-bit types (``ncclNvlsSupported`` in NVIDIA/nccl ``src/include/device.h``;
the ``multimem.ld_reduce`` types of the PTX ISA), so an int8 or fp8 all-reduce takes the ring.

The calibration scales NCCL's latencies (``collective_latency_scale``), adds a fixed launch and
synchronization cost (``collective_latency_s``) and sets the bus efficiency of a collective of
``steps`` ring steps (all-reduce 2 (n-1), the others n-1, a send 1):

    t_p    = collective_latency_s + collective_latency_scale * latency_p
             + bytes_per_direction / (B * eff * protocol_fraction_p)
    t_nvls = collective_latency_s + collective_latency_scale * 25 us
             + S (1 + 1/n) / (B * eff * nvlsEfficiency)
    eff    = link_efficiency * steps / (steps + link_efficiency_drop)

link_efficiency is the fraction of the link a long pipelined ring sustains; each rank's pipeline
fills and drains once per collective, which costs about ``link_efficiency_drop`` steps of
transfer, so a collective with more steps keeps its links busy for a larger share of its time
(the A100 rows show it: at 512 MiB on 8 GPUs all-reduce reaches 0.74 of NVLink, all-gather 0.68;
on 2 GPUs 0.64 and 0.50). The form was chosen over ``link_efficiency - c / n`` on the A100 fit
(median / p90 8.1 / 20.7 -> 8.0 / 19.9 %) and on LLMCompass's A100 all-reduce, which the fit
does not see (26.8 -> 17.2 %).
On a PCIe-only device the ring runs over its PCIe link, peer to peer: whether a node has a P2P
path (or goes through host memory, NCCL's SHM transport) depends on its PCIe topology, which a
spec does not describe.
"""

from __future__ import annotations

import numpy as np

from sim.cost.gpu_params import GpuParams
from sim.cost.roofline import KernelTime
from sim.errors import InputError
from sim.hardware import HardwareSpec, Link

__all__ = ["COLLECTIVES", "NVLS_DTYPES", "bus_efficiency", "collective_time", "collective_times",
           "scale_up_link"]

# kind -> (latency steps per (n-1), bandwidth factor per (n-1)/n)
COLLECTIVES = {
    "allreduce": (2, 2),
    "allgather": (1, 1),
    "reducescatter": (1, 1),
    "alltoall": (1, 1),
}
_LINK_PREFERENCE = ("nvlink", "infinity_fabric", "upi", "pcie", "infiniband", "ethernet")
# NCCL 2.28 ring protocols (tuning.cc, ncclTunerConstantsDefaults): base latency (s), per-step
# latency (s) on (NVLink, PCIe), fraction of the bus bandwidth the protocol carries as payload
_LL = (6.6e-6, (0.6e-6, 1.0e-6), 0.5)
_LL128 = (14.0e-6, (1.9e-6, 2.5e-6), 0.92)
_SIMPLE = (8.4e-6, (3.4e-6, 5.7e-6), 1.0)
_NVLS_LATENCY_S = 25e-6  # hwLatencies[NVLINK][NVLS][Simple]; NVLS has no base latency
#: Element types the switch can reduce (ncclNvlsSupported, module doc); None: not stated (a
#: gradient or activation all-reduce, fp16 / bf16 / fp32)
NVLS_DTYPES = frozenset({"fp16", "bf16", "fp32", "fp64", "int32", "int64"})
# per compute-capability major: (llMaxBws single node, bytes/s; nvlsEfficiency)
_NCCL_ARCH = {7: (39.0e9, 0.0), 8: (87.7e9, 0.0), 9: (141.0e9, 0.85), 10: (282.0e9, 0.74)}
_MIN_LINK_EFFICIENCY = 0.05


def _nccl_arch(spec: HardwareSpec) -> tuple[float, float]:
    """(LL bus-bandwidth cap in bytes/s, NVLS efficiency) for the spec's compute capability;
    no cap and full NVLS efficiency when the spec does not say (e.g. a toy GPU)."""
    cc = spec.compute.compute_capability
    return _NCCL_ARCH.get(int(cc), (np.inf, 1.0)) if cc else (np.inf, 1.0)


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
    dtype: str | None = None,
) -> dict[str, np.ndarray]:
    """Times (s) of collective ``kind`` for arrays of sizes and rank counts (see module doc);
    ``dtype`` (the reduced element type) decides whether NVLS may run.

    Returns ``t_s``, ``t_latency_s``, ``t_bandwidth_s`` and ``nvls`` (True where NVLS won).
    """
    if kind != "sendrecv" and kind not in COLLECTIVES:
        raise InputError(f"unknown collective {kind!r}; one of "
                         f"{', '.join([*COLLECTIVES, 'sendrecv'])}", field="kind")
    link = scale_up_link(spec)
    size, n = (np.asarray(x, dtype=float) for x in np.broadcast_arrays(size_bytes, num_ranks))
    if kind == "sendrecv":
        steps, per_direction = np.ones_like(n), size
    else:
        lat_factor, bw_factor = COLLECTIVES[kind]
        steps, per_direction = lat_factor * (n - 1), bw_factor * (n - 1) / n * size
    rate = link.bandwidth_bytes_per_s * bus_efficiency(params, steps)
    options = _ring_options(spec, params, steps, per_direction, rate)
    nvls_efficiency = _nccl_arch(spec)[1]
    use_nvls = (kind == "allreduce" and link.in_network_reduction and nvls_efficiency > 0
                and (dtype is None or dtype in NVLS_DTYPES))
    if use_nvls:  # in-switch reduction: S (1 + 1/n) per direction, NCCL's NVLS derating
        options.append((_latency_s(params, 0.0, _NVLS_LATENCY_S),
                        size * (1 + 1 / n) / (rate * nvls_efficiency)))
    totals = np.stack([t_lat + t_bw for t_lat, t_bw in options])
    pick = np.argmin(totals, axis=0)
    t_lat = np.choose(pick, [np.broadcast_to(o[0], n.shape) for o in options])
    t_bw = np.choose(pick, [np.broadcast_to(o[1], n.shape) for o in options])
    single = (n < 2) & (kind != "sendrecv")
    return {"t_s": np.where(single, 0.0, t_lat + t_bw),
            "t_latency_s": np.where(single, 0.0, t_lat),
            "t_bandwidth_s": np.where(single, 0.0, t_bw),
            "nvls": (pick == len(options) - 1) & use_nvls}


def bus_efficiency(params: GpuParams, steps: np.ndarray) -> np.ndarray:
    """Fraction of the link a collective of ``steps`` pipelined ring steps sustains (module doc)."""
    steps = np.asarray(steps, dtype=float)
    return np.maximum(_MIN_LINK_EFFICIENCY,
                      params.link_efficiency * steps / (steps + params.link_efficiency_drop))


def _ring_options(spec, params, steps, per_direction, rate) -> list[tuple]:
    """(latency, bandwidth time) of the ring with each protocol NCCL enables on this link."""
    hw = 1 if scale_up_link(spec).kind == "pcie" else 0
    ll_max = _nccl_arch(spec)[0]
    protocols = [(_LL, np.minimum(ll_max, rate * _LL[2])), (_SIMPLE, rate * _SIMPLE[2])]
    if hw == 0:  # LL128 only within NVLink (tuning.cc: typeIntra <= PATH_NVB)
        protocols.append((_LL128, rate * _LL128[2]))
    return [(_latency_s(params, base, steps * hw_lat[hw]), per_direction / bus)
            for (base, hw_lat, _), bus in protocols]


def _latency_s(params: GpuParams, base_s: float, steps_s: np.ndarray) -> np.ndarray:
    return params.collective_latency_s + params.collective_latency_scale * (base_s + steps_s)


def collective_time(
    spec: HardwareSpec,
    *,
    kind: str,
    size_bytes: float,
    num_ranks: int,
    params: GpuParams | None = None,
    dtype: str | None = None,
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
        r = collective_times(spec, params, kind=kind, size_bytes=size_bytes, num_ranks=num_ranks,
                             dtype=dtype)
        t_lat, t_bw = float(r["t_latency_s"]), float(r["t_bandwidth_s"])
        algorithm = "nvls" if bool(r["nvls"]) else "ring"
        if algorithm == "nvls":
            fraction = 1 + 1 / num_ranks
    detail = {"link": link.name, "link_bytes_per_s": link.bandwidth_bytes_per_s,
              "num_ranks": num_ranks, "algorithm": algorithm, "t_latency_s": t_lat,
              "t_bandwidth_s": t_bw, "bus_bytes": fraction * size_bytes}
    return KernelTime(t_s=t_lat + t_bw, bound="link", detail=detail)
