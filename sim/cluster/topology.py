"""The interconnect of a system as a graph: GPUs, switches, NICs, leaves and spine.

:func:`build_topology` expands a system's compact description (``sim.cluster.system``) into a
:class:`Topology`: named nodes (``gpu0``, ``nvswitch0``, ``pcie_sw0``, ``cpu0``, ``nic0``,
``leaf0``, ``spine0``) and undirected :class:`Edge` s whose bandwidth is per direction, in bytes/s.
:meth:`Topology.route` is the fewest-hop path (GPUs are endpoints, never transit), reduced to a
:class:`Route`: bottleneck bandwidth, summed latency. Edge bandwidth is what one GPU pair's flow
gets: the physical link for NVLink, NIC and PCIe edges; for leaf-to-spine edges the per-port share
of the uplinks, ``nic bandwidth / oversubscription``. Fabric latency sits on the GPU-NIC edges
(half each), so every fabric route costs the spec's GPU-to-GPU latency; switch hops are folded in.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.errors import InputError
from sim.hardware import HardwareSpec, Link

__all__ = ["Fabric", "PcieHost", "Edge", "Route", "Topology", "build_topology"]


@dataclass(frozen=True)
class Fabric:
    """The scale-out network between scale-up domains.

    ``nic_bandwidth_bytes_per_s``: one NIC, per direction (400 Gb/s NDR = 50e9 B/s).
    ``nics_per_gpu``: NICs per GPU (1.0 on DGX H100; 0.5 when two GPUs share one).
    ``latency_s``: one-way GPU-to-GPU message latency through NICs and switches.
    ``domains_per_group``: domains per leaf group (a scalable unit: rail-optimized, each rail of
    the group's domains shares one leaf; fat tree, the group's GPUs share one leaf).
    ``oversubscription`` >= 1 divides the leaf-to-spine share (1 = full bisection).
    ``in_network_reduction``: InfiniBand SHARP.
    """

    kind: str
    nic_bandwidth_bytes_per_s: float
    nics_per_gpu: float
    latency_s: float
    topology: str
    oversubscription: float
    in_network_reduction: bool
    domains_per_group: int = 1

    @property
    def gpu_bandwidth_bytes_per_s(self) -> float:
        """The NIC bandwidth one GPU has, per direction."""
        return self.nic_bandwidth_bytes_per_s * self.nics_per_gpu


@dataclass(frozen=True)
class PcieHost:
    """The host of a ``pcie`` domain: ``sockets`` CPUs of spec ``cpu`` (joined by its UPI /
    Infinity Fabric link), each root port feeding ``pcie_switches / sockets`` PCIe switches
    (over the CPU's PCIe link); the GPUs split evenly over the switches."""

    cpu: HardwareSpec
    sockets: int
    pcie_switches: int

    @property
    def socket_link(self) -> Link | None:
        return self.cpu.link("upi") or self.cpu.link("infinity_fabric")

    @property
    def root_link(self) -> Link | None:
        return self.cpu.link("pcie")


@dataclass(frozen=True)
class Edge:
    """An undirected link between nodes ``a`` and ``b``; bandwidth per direction, in bytes/s."""

    a: str
    b: str
    kind: str
    bandwidth_bytes_per_s: float
    latency_s: float


@dataclass(frozen=True)
class Route:
    """A path between two GPUs: ``bandwidth_bytes_per_s`` is its bottleneck edge, ``latency_s``
    the sum over its edges; ``via`` is ``fabric`` if it crosses a NIC, ``host`` if it crosses a
    CPU socket, else ``scale_up``."""

    bandwidth_bytes_per_s: float
    latency_s: float
    hops: int
    via: str
    edges: tuple[Edge, ...]


def _node_kind(node: str) -> str:
    return node.rstrip("0123456789")


_FABRIC_NODES = frozenset({"nic", "leaf", "spine"})


class Topology:
    """The interconnect graph. A route is the fewest-hop path that never passes through a GPU and
    leaves the scale-up domain (NIC, leaf, spine nodes) only when it must; ties go to the edge
    listed first. Breadth-first trees are computed once per source and kept."""

    def __init__(self, nodes: tuple[str, ...], edges: tuple[Edge, ...]):
        self.nodes = nodes
        self.edges = edges
        self._adjacent: dict[str, list[tuple[str, Edge]]] = {n: [] for n in nodes}
        for e in edges:
            self._adjacent[e.a].append((e.b, e))
            self._adjacent[e.b].append((e.a, e))
        self._trees: dict[tuple[str, bool], dict[str, tuple[str, Edge] | None]] = {}
        self._routes: dict[tuple[str, str], Route | None] = {}

    def __repr__(self) -> str:
        return f"Topology({len(self.nodes)} nodes, {len(self.edges)} edges)"

    def route(self, a: str, b: str) -> Route:
        """The fewest-hop route from node ``a`` to node ``b`` (KeyError if unknown, ValueError if
        ``a == b`` or no path)."""
        key = (a, b)
        if key not in self._routes:
            self._routes[key] = self._find(a, b)
        found = self._routes[key]
        if found is None:
            raise ValueError(f"no route from {a} to {b}")
        return found

    def check_connected(self, source: str, *, field: str | None = None) -> None:
        """Every GPU reaches the first GPU, else an :class:`InputError` naming the pair."""
        gpus = [n for n in self.nodes if _node_kind(n) == "gpu"]
        if not gpus:
            return
        tree = self._tree(gpus[0], local=False)
        for gpu in gpus[1:]:
            if gpu not in tree:
                raise InputError(f"topology does not connect: {gpus[0]} cannot reach {gpu}",
                                 source=source, field=field)

    def _find(self, a: str, b: str) -> Route | None:
        if a == b:
            raise ValueError(f"a route needs two different nodes, got {a} twice")
        if b not in self._adjacent:
            raise KeyError(b)
        tree = self._tree(a, local=True)
        if b not in tree:
            tree = self._tree(a, local=False)
        if b not in tree:
            return None
        edges, node = [], b
        while (step := tree[node]) is not None:
            node, edge = step
            edges.append(edge)
        edges.reverse()
        return _route_of(tuple(edges))

    def _tree(self, source: str, *, local: bool) -> dict[str, tuple[str, Edge] | None]:
        """Breadth-first parents from ``source``; GPUs other than the source are leaves, and a
        ``local`` tree does not enter the fabric."""
        if (source, local) not in self._trees:
            parents: dict[str, tuple[str, Edge] | None] = {source: None}
            frontier = [source]
            while frontier:
                following = []
                for node in frontier:
                    if node != source and _node_kind(node) == "gpu":
                        continue
                    for other, edge in self._adjacent[node]:
                        if local and _node_kind(other) in _FABRIC_NODES:
                            continue
                        if other not in parents:
                            parents[other] = (node, edge)
                            following.append(other)
                frontier = following
            self._trees[source, local] = parents
        return self._trees[source, local]


def _route_of(edges: tuple[Edge, ...]) -> Route:
    kinds = {_node_kind(n) for e in edges for n in (e.a, e.b)}
    via = "fabric" if "nic" in kinds else "host" if "cpu" in kinds else "scale_up"
    return Route(bandwidth_bytes_per_s=min(e.bandwidth_bytes_per_s for e in edges),
                 latency_s=sum(e.latency_s for e in edges), hops=len(edges), via=via,
                 edges=edges)


def build_topology(*, gpus_per_domain: int, num_domains: int, scale_up: Link,
                   scale_up_kind: str, fabric: Fabric | None,
                   host: PcieHost | None) -> Topology:
    """Expand the compact description into nodes and edges (see module doc for the model)."""
    nodes: list[str] = [f"gpu{i}" for i in range(gpus_per_domain * num_domains)]
    edges: list[Edge] = []
    for d in range(num_domains):
        gpus = [f"gpu{d * gpus_per_domain + i}" for i in range(gpus_per_domain)]
        if scale_up_kind == "switch":
            _switch_domain(d, gpus, scale_up, nodes, edges)
        elif scale_up_kind == "mesh":
            _mesh_domain(gpus, scale_up, edges)
        else:
            _pcie_domain(d, gpus, scale_up, host, nodes, edges)
    if fabric is not None:
        _fabric(fabric, gpus_per_domain, num_domains, nodes, edges)
    return Topology(tuple(nodes), tuple(edges))


def _switch_domain(d: int, gpus: list[str], link: Link, nodes: list, edges: list) -> None:
    switch = f"nvswitch{d}"
    nodes.append(switch)
    edges += [Edge(g, switch, link.kind, link.bandwidth_bytes_per_s, link.latency_s / 2)
              for g in gpus]


def _mesh_domain(gpus: list[str], link: Link, edges: list) -> None:
    per_peer = link.bandwidth_bytes_per_s / max(len(gpus) - 1, 1)
    edges += [Edge(a, b, link.kind, per_peer, link.latency_s)
              for i, a in enumerate(gpus) for b in gpus[i + 1:]]


def _pcie_domain(d: int, gpus: list[str], link: Link, host: PcieHost, nodes: list,
                 edges: list) -> None:
    """GPUs under PCIe switches, switches under CPU root ports, sockets joined pairwise."""
    root, upi = host.root_link, host.socket_link
    cpus = [f"cpu{d * host.sockets + s}" for s in range(host.sockets)]
    switches = [f"pcie_sw{d * host.pcie_switches + k}" for k in range(host.pcie_switches)]
    nodes += cpus + switches
    per_switch, per_socket = len(gpus) // len(switches), len(switches) // len(cpus)
    for i, g in enumerate(gpus):
        edges.append(Edge(g, switches[i // per_switch], "pcie", link.bandwidth_bytes_per_s,
                          link.latency_s / 2))
    for k, sw in enumerate(switches):
        edges.append(Edge(sw, cpus[k // per_socket], "pcie", root.bandwidth_bytes_per_s,
                          root.latency_s / 2))
    edges += [Edge(a, b, upi.kind, upi.bandwidth_bytes_per_s, upi.latency_s)
              for i, a in enumerate(cpus) for b in cpus[i + 1:]]


def _fabric(f: Fabric, gpus_per_domain: int, num_domains: int, nodes: list,
            edges: list) -> None:
    """One NIC node per GPU (its NIC share); rail-optimized: a leaf per (group, rail); fat tree:
    a leaf per group. One ``spine0`` node stands for the spine layer: a flow's bandwidth is its
    leaf's uplink share whichever spine it takes, so more spine nodes would change no route."""
    bw, half = f.gpu_bandwidth_bytes_per_s, f.latency_s / 2
    rail = f.topology == "rail-optimized"
    leaves_per_group = gpus_per_domain if rail else 1
    num_groups = -(-num_domains // f.domains_per_group)
    leaves = [f"leaf{k}" for k in range(num_groups * leaves_per_group)]
    nodes += [f"nic{i}" for i in range(gpus_per_domain * num_domains)] + leaves
    for i in range(gpus_per_domain * num_domains):
        group = i // gpus_per_domain // f.domains_per_group
        leaf = leaves[group * leaves_per_group + (i % gpus_per_domain if rail else 0)]
        edges.append(Edge(f"gpu{i}", f"nic{i}", f.kind, bw, half))
        edges.append(Edge(f"nic{i}", leaf, f.kind, bw, 0.0))
    if len(leaves) > 1:
        nodes.append("spine0")
        edges += [Edge(leaf, "spine0", f.kind, bw / f.oversubscription, 0.0) for leaf in leaves]


