"""Links as shared resources: concurrent transfers on a port share its bandwidth.

A **port** is one device's attachment to a network: its scale-up port (NVLink to the NVSwitch,
xGMI, PCIe) or its NIC. Every transfer in flight on a port is a **flow** with bytes left and a rate
cap (what the transfer would reach alone: the collective algorithm's efficiency on that link).
The port's bandwidth is shared max-min fairly among its flows (water filling: no flow gets more
than its cap; what capped flows leave is split among the others), so two concurrent transfers
each slow down only as far as the port is actually oversubscribed. This is the fluid
(processor-sharing) model of flow-level network simulators (e.g. SimGrid's LV08 model, Velho et al.,
ACM TOMACS 23(4), 2013), reduced to one bottleneck port per flow.

Lifecycle of a flow: *added* (rates of its port's flows are recomputed) -> *draining* (bytes
decrease at its current rate; the rate changes whenever a flow joins or leaves the port) ->
*done* (its event succeeds). Rates change only at those instants, so between them every flow's
remaining bytes fall linearly and the next completion time is exact.

Ports also keep what reports need: bytes carried and the time they were busy.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import simpy

__all__ = ["FluidNetwork", "PortUsage"]

_EPS_BYTES = 1e-6  # below a millionth of a byte a flow is done (float residue)


@dataclass
class PortUsage:
    """What a port carried: ``bytes`` in all, ``busy_s`` with at least one flow in flight."""

    capacity_bytes_per_s: float
    bytes: float = 0.0
    busy_s: float = 0.0


class _Flow:
    __slots__ = ("remaining", "cap", "rate", "event")

    def __init__(self, nbytes: float, cap: float, event: simpy.Event):
        self.remaining, self.cap, self.rate, self.event = nbytes, cap, 0.0, event


class _Port:
    __slots__ = ("capacity", "flows", "last_t", "version", "usage")

    def __init__(self, capacity: float):
        self.capacity = capacity
        self.flows: list[_Flow] = []
        self.last_t = 0.0
        self.version = 0
        self.usage = PortUsage(capacity)


class FluidNetwork:
    """The ports of a simulation and the flows on them (see the module doc)."""

    def __init__(self, env: simpy.Environment):
        self.env = env
        self._ports: dict[Hashable, _Port] = {}

    def transfer(self, flows: Sequence[tuple[Hashable, float, float, float]]) -> simpy.Event:
        """Start ``flows`` = (port, port capacity bytes/s, bytes, rate cap bytes/s) at once; the
        returned event succeeds when the last of them is done."""
        events = [self._add(*flow) for flow in flows if flow[2] > 0.0]
        if not events:
            return self.env.timeout(0.0)
        return events[0] if len(events) == 1 else self.env.all_of(events)

    def usage(self) -> dict[Hashable, PortUsage]:
        return {key: port.usage for key, port in self._ports.items()}

    # -- one port --------------------------------------------------------------------------
    def _add(self, key: Hashable, capacity: float, nbytes: float, cap: float) -> simpy.Event:
        port = self._ports.get(key)
        if port is None:
            port = self._ports[key] = _Port(capacity)
        self._advance(port)
        event = self.env.event()
        port.flows.append(_Flow(nbytes, min(cap, capacity), event))
        port.usage.bytes += nbytes
        self._reschedule(port)
        return event

    def _advance(self, port: _Port) -> None:
        """Drain every flow of ``port`` up to now at its current rate."""
        dt = self.env.now - port.last_t
        if dt > 0.0 and port.flows:
            port.usage.busy_s += dt
            for flow in port.flows:
                flow.remaining -= flow.rate * dt
        port.last_t = self.env.now

    def _reschedule(self, port: _Port) -> None:
        """Share the port among its flows and wake up at the next completion."""
        _share(port.capacity, port.flows)
        port.version += 1
        if not port.flows:
            return
        delay = max(0.0, min(f.remaining / f.rate for f in port.flows))
        version = port.version
        self.env.timeout(delay).callbacks.append(lambda _: self._complete(port, version))

    def _complete(self, port: _Port, version: int) -> None:
        if version != port.version:  # the flows changed since this wake-up was planned
            return
        self._advance(port)
        done = [f for f in port.flows if f.remaining <= _EPS_BYTES + 1e-12 * f.cap]
        if not done:  # float residue: the soonest flow is done by construction
            done = [min(port.flows, key=lambda f: f.remaining / f.rate)]
        port.flows = [f for f in port.flows if f not in done]
        for flow in done:
            flow.event.succeed()
        self._reschedule(port)


def _share(capacity: float, flows: list[_Flow]) -> None:
    """Max-min fair rates with caps (water filling), in place."""
    left, open_flows = capacity, sorted(flows, key=lambda f: f.cap)
    while open_flows:
        fair = left / len(open_flows)
        flow = open_flows[0]
        if flow.cap <= fair:
            flow.rate = flow.cap
            left -= flow.cap
            open_flows.pop(0)
        else:
            for f in open_flows:
                f.rate = fair
            return
