"""System specs: multi-GPU nodes, racks and clusters, with their interconnect as a graph.

A :class:`SystemSpec` is ``num_domains`` scale-up domains of ``gpus_per_domain`` GPUs of one
device (a :class:`~sim.hardware.HardwareSpec`). Inside a domain GPUs talk over the scale-up link:
an NVSwitch (``switch``), an all-to-all xGMI mesh (``mesh``: per-peer bandwidth = total / (G - 1))
or PCIe switches under the host CPUs (``pcie``). Domains talk over a scale-out :class:`Fabric`
(InfiniBand, RoCE, Ethernet): one NIC share per GPU, leaf switches (one per rail in a
rail-optimized fabric, one per group of domains in a fat tree) and a spine layer.

The compact YAML (``schema: tksim.system/1``, ``docs/spec-format.md`` "System specs") is expanded
into a graph of nodes and links (:mod:`sim.cluster.topology`); :meth:`SystemSpec.route` gives the
path between two GPUs.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from sim.cluster.topology import Edge, Fabric, PcieHost, Route, Topology, build_topology
from sim.errors import InputError, suggest
from sim.hardware import HardwareSpec, Link
from sim.spec_library import load_spec, read_yaml, spec_dirs
from sim.spec_reader import Reader, open_spec
from sim.units import Dimension, format_quantity

__all__ = [
    "SCHEMA",
    "Fabric",
    "PcieHost",
    "Edge",
    "Route",
    "Topology",
    "SystemSpec",
    "parse_system",
    "load_system",
    "list_systems",
    "system_dirs",
    "system_text",
    "system_dict",
    "COLLECTIVE_KEYS",
]

SCHEMA = "tksim.system/1"
SCALE_UP_KINDS = ("switch", "mesh", "pcie")
FABRIC_KINDS = ("infiniband", "roce", "ethernet")
FABRIC_TOPOLOGIES = ("rail-optimized", "fat-tree")
MAX_GPUS = 1_000_000
# Largest scale-up domain per kind: NVLink Switch System reaches 576 GPUs (NVLink 5, Blackwell
# datasheet); an xGMI mesh needs G - 1 links per GPU (MI300X has 7); a PCIe tree rarely exceeds 16.
_DOMAIN_LINKS = {"switch": ("nvlink",), "mesh": ("infinity_fabric", "nvlink"), "pcie": ("pcie",)}
_MAX_DOMAIN_GPUS = {"switch": 576, "mesh": 8, "pcie": 16}
_MAX_NIC_BW = 1e13  # 80 Tb/s per NIC: beyond it, a unit slip
_MAX_FABRIC_LATENCY_S = 1e-3


@dataclass(frozen=True)
class SystemSpec:
    """``num_domains`` scale-up domains of ``gpus_per_domain`` ``device`` GPUs (see module doc).

    ``scale_up`` is the device link a GPU uses inside its domain (per GPU, per direction);
    ``host`` the CPUs and PCIe switches of a ``pcie`` domain. GPU ranks are numbered
    domain-major: rank ``r`` is GPU ``r % gpus_per_domain`` of domain ``r // gpus_per_domain``.
    """

    name: str
    path: str
    description: str
    aliases: tuple[str, ...]
    device: HardwareSpec
    gpus_per_domain: int
    num_domains: int
    scale_up: Link
    scale_up_kind: str
    fabric: Fabric | None
    graph: Topology = dataclasses.field(repr=False, compare=False)
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)
    host: PcieHost | None = None
    #: Collective parameters measured on this system (YAML ``collectives``, written by
    #: ``tksim calibrate --collectives``): GpuParams field -> value; they replace the
    #: transferable A100 fit's for this system's collectives (:meth:`collective_params`).
    collectives: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def collective_params(self, params):
        """``params`` (a GpuParams) with this system's measured collective parameters."""
        return params.replace(**self.collectives) if self.collectives else params

    @property
    def num_gpus(self) -> int:
        return self.gpus_per_domain * self.num_domains

    def domain_of(self, gpu: int) -> int:
        self._check_rank(gpu)
        return gpu // self.gpus_per_domain

    def route(self, gpu_a: int, gpu_b: int) -> Route:
        """The route between GPU ranks ``gpu_a`` and ``gpu_b`` (0 .. num_gpus - 1)."""
        self._check_rank(gpu_a)
        self._check_rank(gpu_b)
        return self.graph.route(f"gpu{gpu_a}", f"gpu{gpu_b}")

    def with_domains(self, n: int) -> SystemSpec:
        """The same node type, ``n`` domains (a cluster of ``n`` nodes)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InputError(f"must be a whole number >= 1, got {n!r}", field="--nodes")
        if n * self.gpus_per_domain > MAX_GPUS:
            raise InputError(f"absurd size: {n} x {self.gpus_per_domain} GPUs exceeds "
                             f"{MAX_GPUS:,}", field="--nodes")
        if n > 1 and self.fabric is None:
            raise InputError(f"{self.name} has no scale-out fabric: it cannot span {n} nodes",
                             field="--nodes")
        if n == self.num_domains:
            return self
        graph = build_topology(gpus_per_domain=self.gpus_per_domain, num_domains=n,
                               scale_up=self.scale_up, scale_up_kind=self.scale_up_kind,
                               fabric=self.fabric, host=self.host)
        return dataclasses.replace(self, num_domains=n, graph=graph)

    def _check_rank(self, gpu: int) -> None:
        if not 0 <= gpu < self.num_gpus:
            raise ValueError(f"GPU rank {gpu} outside 0..{self.num_gpus - 1} of {self.name}")


# -- reading -----------------------------------------------------------------------------------
def parse_system(data: object, *, file: str) -> SystemSpec:
    """Build a :class:`SystemSpec` from parsed YAML, validating every field."""
    top, sources = open_spec(data, file=file, schema=SCHEMA)
    device = _read_device(top, "device", file, kind="gpu")
    gpus, kind, link = _read_domain(top.section("domain"), device)
    num_domains = _count(top, "domains", high=MAX_GPUS)
    if num_domains * gpus > MAX_GPUS:
        raise top.error("domains", f"absurd size: {num_domains * gpus:,} GPUs")
    host = _read_host(top, kind, gpus, file)
    fabric = _read_fabric(top.section("fabric", required=False))
    collectives, nvls = _read_collectives(top.section("collectives", required=False))
    if not nvls:  # measured: this system's NCCL does not reduce in the switch
        link = dataclasses.replace(link, in_network_reduction=False)
    spec = SystemSpec(
        name=top.text("name"),
        path=file,
        description=top.text("description", required=False) or "",
        aliases=tuple(top.raw("aliases", list, required=False) or ()),
        device=device, gpus_per_domain=gpus, num_domains=num_domains, scale_up=link,
        scale_up_kind=kind, fabric=fabric, sources=sources, host=host, collectives=collectives,
        graph=build_topology(gpus_per_domain=gpus, num_domains=num_domains, scale_up=link,
                             scale_up_kind=kind, fabric=fabric, host=host),
    )
    top.finish()
    spec.graph.check_connected(file, field="fabric" if fabric is None else "domains")
    return spec


#: ``collectives`` keys -> (GpuParams field, dimension, upper bound): a system calibration
COLLECTIVE_KEYS = {
    "link_efficiency": ("link_efficiency", Dimension.RATIO, 1.0),
    "pipeline_fill_steps": ("link_efficiency_drop", Dimension.COUNT, 64.0),
    "latency_scale": ("collective_latency_scale", Dimension.RATIO, 100.0),
    "latency": ("collective_latency_s", Dimension.TIME, 1e-3),
}


def _read_collectives(r: Reader | None) -> tuple[dict[str, float], bool]:
    """The optional ``collectives`` section: parameters of the collective model measured on
    this system (sim.cost.collective: bus efficiency link_efficiency * s / (s + fill) for a
    collective of s ring steps, NCCL's latencies x latency_scale + latency), and whether its
    NCCL runs NVLS where the switch could (``nvls``, default true)."""
    if r is None:
        return {}, True
    out = {field: r.quantity(key, dim, high=high, allow_zero=key != "link_efficiency")
           for key, (field, dim, high) in COLLECTIVE_KEYS.items()}
    nvls = r.raw("nvls", bool, required=False)
    r.finish()
    return out, True if nvls is None else nvls


def _read_device(r: Reader, key: str, file: str, *, kind: str) -> HardwareSpec:
    """A device spec by name, alias or path (a relative path is taken from the system file)."""
    name = r.text(key)
    if name.endswith((".yaml", ".yml")) and not os.path.isabs(name):
        beside = Path(file).parent / name
        name = str(beside) if beside.is_file() else name
    try:
        device = load_spec(name)
    except InputError as exc:
        raise r.error(key, exc.message) from None
    if device.kind != kind:
        raise r.error(key, f"{device.name} is a {device.kind}, expected a {kind}")
    return device


def _count(r: Reader, key: str, *, high: float, required: bool = True) -> int | None:
    value = r.quantity(key, Dimension.COUNT, high=high, required=required)
    if value is None:
        return None
    if not value.is_integer():
        raise r.error(key, f"must be a whole number, got {value:g}")
    return int(value)


def _read_domain(r: Reader, device: HardwareSpec) -> tuple[int, str, Link]:
    kind = r.text("kind", choices=SCALE_UP_KINDS)
    gpus = _count(r, "gpus", high=MAX_GPUS)
    if gpus > _MAX_DOMAIN_GPUS[kind]:
        raise r.error("gpus", f"a {kind} domain holds at most {_MAX_DOMAIN_GPUS[kind]} GPUs, "
                      f"got {gpus}")
    link_name = r.text("link")
    link = next((lk for lk in device.links if lk.name == link_name), None)
    if link is None:
        names = ", ".join(lk.name for lk in device.links) or "(none)"
        raise r.error("link", f"{device.name} has no link {link_name!r}; its links: {names}")
    if link.kind not in _DOMAIN_LINKS[kind]:
        raise r.error("link", f"a {kind} domain needs a {' or '.join(_DOMAIN_LINKS[kind])} "
                      f"link, but {link_name} is {link.kind}")
    if kind == "mesh" and gpus < 2:
        raise r.error("gpus", "a mesh needs at least 2 GPUs")
    r.finish()
    if kind == "pcie":  # a PCIe tree has no switch-side reduction
        link = dataclasses.replace(link, in_network_reduction=False)
    return gpus, kind, link


def _read_host(top: Reader, kind: str, gpus: int, file: str) -> PcieHost | None:
    r = top.section("host", required=kind == "pcie")
    if r is None:
        return None
    if kind != "pcie":
        raise top.error("host", f"only a pcie domain has a host section, not a {kind} one")
    host = PcieHost(cpu=_read_device(r, "cpu", file, kind="cpu"),
                    sockets=_count(r, "sockets", high=8),
                    pcie_switches=_count(r, "pcie_switches", high=64))
    if host.pcie_switches % host.sockets or gpus % host.pcie_switches:
        raise r.error("pcie_switches", f"must split {gpus} GPUs evenly and divide evenly over "
                      f"{host.sockets} sockets, got {host.pcie_switches}")
    if host.root_link is None or (host.sockets > 1 and host.socket_link is None):
        raise r.error("cpu", f"{host.cpu.name} needs a pcie link and (for several sockets) "
                      "a upi or infinity_fabric link")
    r.finish()
    return host


def _read_fabric(r: Reader | None) -> Fabric | None:
    if r is None:
        return None
    kind = r.text("kind", choices=FABRIC_KINDS)
    fabric = Fabric(
        kind=kind,
        nic_bandwidth_bytes_per_s=r.quantity("nic_bandwidth", Dimension.BANDWIDTH,
                                             high=_MAX_NIC_BW),
        nics_per_gpu=r.quantity("nics_per_gpu", Dimension.COUNT, high=16),
        latency_s=r.quantity("latency", Dimension.TIME, high=_MAX_FABRIC_LATENCY_S),
        topology=r.text("topology", choices=FABRIC_TOPOLOGIES),
        oversubscription=r.quantity("oversubscription", Dimension.RATIO, high=64),
        in_network_reduction=bool(r.raw("in_network_reduction", bool, required=False)),
        domains_per_group=_count(r, "domains_per_group", high=MAX_GPUS),
    )
    if fabric.oversubscription < 1:
        raise r.error("oversubscription", f"must be >= 1 (1 = full bisection), got "
                      f"{fabric.oversubscription:g}")
    if fabric.in_network_reduction and kind != "infiniband":
        raise r.error("in_network_reduction", f"SHARP needs infiniband, not {kind}")
    r.finish()
    return fabric


# -- finding -----------------------------------------------------------------------------------
def system_dirs() -> list[Path]:
    """``systems/`` under each spec directory (``TKSIM_HW_SPECS`` first, then ``hw_specs/``)."""
    return [d / "systems" for d in spec_dirs()]


@lru_cache(maxsize=64)
def _load_cached(path: str, mtime_ns: int) -> SystemSpec:
    return parse_system(read_yaml(Path(path)), file=path)


def _load_file(path: str | Path) -> SystemSpec:
    path = Path(path)
    if not path.is_file():
        raise InputError("no such system spec file", source=str(path))
    return _load_cached(str(path), path.stat().st_mtime_ns)


def list_systems() -> list[SystemSpec]:
    """All systems on the search path, first directory winning on duplicate names, by name."""
    found: dict[str, SystemSpec] = {}
    for directory in system_dirs():
        if directory.is_dir():
            for path in sorted(directory.glob("*.yaml")):
                spec = _load_file(path)
                found.setdefault(spec.name, spec)
    return sorted(found.values(), key=lambda s: s.name)


def load_system(name_or_path: str) -> SystemSpec:
    """A system by name, alias or YAML path; an unknown name fails with the closest names."""
    if name_or_path.endswith((".yaml", ".yml")) or os.sep in name_or_path:
        return _load_file(name_or_path)
    systems = list_systems()
    for spec in systems:
        if name_or_path == spec.name or name_or_path in spec.aliases:
            return spec
    names = [s.name for s in systems] + [a for s in systems for a in s.aliases]
    raise InputError(f"unknown system spec {name_or_path!r}; {suggest(name_or_path, names)}",
                     field="--system")


# -- views -------------------------------------------------------------------------------------
def scale_up_text(spec: SystemSpec) -> str:
    bw = format_quantity(spec.scale_up.bandwidth_bytes_per_s, "B/s")
    return f"{spec.scale_up_kind} {spec.scale_up.name} {bw}"


def fabric_text(spec: SystemSpec) -> str:
    f = spec.fabric
    if f is None:
        return "-"
    bw = format_quantity(f.gpu_bandwidth_bytes_per_s, "B/s")
    return f"{f.kind} {bw}/GPU {f.topology}" + (f" 1:{f.oversubscription:g}"
                                                if f.oversubscription > 1 else "")


def system_dict(spec: SystemSpec) -> dict:
    """The system in SI units (keys carry the unit), with its sources; the device by name."""
    return {
        "name": spec.name, "kind": "system", "path": spec.path, "description": spec.description,
        "aliases": list(spec.aliases), "device": spec.device.name,
        "gpus_per_domain": spec.gpus_per_domain, "num_domains": spec.num_domains,
        "num_gpus": spec.num_gpus, "scale_up_kind": spec.scale_up_kind,
        "scale_up": dataclasses.asdict(spec.scale_up),
        "fabric": dataclasses.asdict(spec.fabric) if spec.fabric else None,
        "host": None if spec.host is None else {"cpu": spec.host.cpu.name,
                                                "sockets": spec.host.sockets,
                                                "pcie_switches": spec.host.pcie_switches},
        "graph": {"num_nodes": len(spec.graph.nodes), "num_edges": len(spec.graph.edges)},
        "collectives": dict(spec.collectives),
        "sources": dict(spec.sources),
    }


def system_text(spec: SystemSpec) -> str:
    fq = format_quantity
    lines = [
        f"{spec.name} (system, {spec.num_gpus} GPUs)  {spec.description}",
        f"  aliases: {', '.join(spec.aliases) or '-'}   file: {spec.path}",
        f"  device: {spec.device.name}   {spec.num_domains} domain(s) x "
        f"{spec.gpus_per_domain} GPUs",
        f"  scale-up: {scale_up_text(spec)} per GPU per direction, latency "
        f"{fq(spec.scale_up.latency_s, 's')}"
        + ("   in-network reduction" if spec.scale_up.in_network_reduction else ""),
    ]
    if spec.host is not None:
        lines.append(f"  host: {spec.host.sockets} x {spec.host.cpu.name}, "
                     f"{spec.host.pcie_switches} PCIe switches")
    if spec.fabric is not None:
        f = spec.fabric
        lines.append(f"  fabric: {fabric_text(spec)}, {f.nics_per_gpu:g} x "
                     f"{fq(f.nic_bandwidth_bytes_per_s, 'B/s')} NIC per GPU, latency "
                     f"{fq(f.latency_s, 's')}, {f.domains_per_group} domains per leaf group"
                     + (", SHARP" if f.in_network_reduction else ""))
    lines.append(f"  graph: {len(spec.graph.nodes)} nodes, {len(spec.graph.edges)} edges")
    if spec.collectives:
        c = spec.collectives
        lines.append(f"  collectives (measured on this system): link efficiency "
                     f"{c['link_efficiency']:.3f}, pipeline fill {c['link_efficiency_drop']:.2f} "
                     f"steps, NCCL latency x {c['collective_latency_scale']:.2f} + "
                     f"{fq(c['collective_latency_s'], 's')}")
    lines.append("  sources:")
    lines += [f"    [{key}] {text}" for key, text in spec.sources.items()]
    return "\n".join(lines)
